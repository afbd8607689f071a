namespace Graft.Data;

/// <summary>
/// A data record that cannot be read: names the file, where in it (a line for JSONL and CSV, a
/// record index and id for JSON arrays, a qid for ScienceQA) and what is wrong.
/// </summary>
public sealed class DataFormatException : Exception
{
    public DataFormatException(string file, string location, string problem, Exception? inner = null)
        : base($"{file}, {location}: {problem}", inner)
    {
        FileName = file;
        Location = location;
        Problem = problem;
    }

    public string FileName { get; }

    /// <summary>"line 7", "record 3 (id \"x\")", "qid 42", ...</summary>
    public string Location { get; }

    public string Problem { get; }

    internal static string Line(long line) => $"line {line}";

    internal static string Record(int index, string? id) => id is null ? $"record {index}" : $"record {index} (id \"{id}\")";
}
