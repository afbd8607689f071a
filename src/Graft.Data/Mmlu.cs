using System.Text;
using System.Text.Json;

namespace Graft.Data;

/// <summary>One four-option MMLU question; <see cref="Answer"/> is the index of the right choice.</summary>
public sealed record MmluQuestion(string Subject, string Question, IReadOnlyList<string> Choices, int Answer)
{
    public const string Letters = "ABCD";

    public char AnswerLetter => Letters[Answer];
}

/// <summary>
/// Reads MMLU as the Hendrycks tarball lays it out (<c>{split}/{subject}_{split}.csv</c>, no header,
/// columns question, A, B, C, D, answer letter) and as JSONL
/// (<c>{"subject", "question", "choices": [4], "answer": "A" | 0}</c>).
/// </summary>
public static class MmluReader
{
    /// <summary>One subject's CSV; the subject is the file name less "_{split}.csv".</summary>
    /// <summary>Questions in MMLU's CSV layout (no header: question, the choices, the answer letter), as <see cref="ReadCsv"/> reads them.</summary>
    public static string ToCsv(IEnumerable<MmluQuestion> questions)
    {
        var text = new System.Text.StringBuilder();
        foreach (var q in questions) Csv.AppendRecord(text, [q.Question, .. q.Choices, q.AnswerLetter.ToString()]);
        return text.ToString();
    }

    public static List<MmluQuestion> ReadCsv(string path)
    {
        string subject = SubjectOf(path);
        var questions = new List<MmluQuestion>();
        foreach (var (line, fields) in Csv.Read(path, JsonFiles.ReadText(path)))
        {
            string where = DataFormatException.Line(line);
            if (fields.Count != 6)
                throw new DataFormatException(path, where, $"{fields.Count} columns; expected 6 (question, A, B, C, D, answer)");
            int answer = fields[5].Trim() is { Length: 1 } letter ? MmluQuestion.Letters.IndexOf(letter[0]) : -1;
            if (answer < 0)
                throw new DataFormatException(path, where, $"answer \"{fields[5]}\" is not one of A, B, C, D");
            questions.Add(new MmluQuestion(subject, fields[0], fields.GetRange(1, 4), answer));
        }
        return questions;
    }

    /// <summary>Every subject of one split folder ("dev", "val", "test"), by subject name in ordinal order.</summary>
    public static SortedDictionary<string, List<MmluQuestion>> ReadSplit(string root, string split)
    {
        string folder = Path.Combine(root, split);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"MMLU split folder not found: {folder}");
        var result = new SortedDictionary<string, List<MmluQuestion>>(StringComparer.Ordinal);
        foreach (var file in Directory.GetFiles(folder, $"*_{split}.csv").Order(StringComparer.Ordinal))
            result[SubjectOf(file)] = ReadCsv(file);
        return result;
    }

    public static List<MmluQuestion> ReadJsonl(string path)
    {
        var questions = new List<MmluQuestion>();
        foreach (var (line, element) in JsonFiles.ReadLines(path))
        {
            var record = JsonRecord.Object(path, DataFormatException.Line(line), element);
            var choices = record.StringArray("choices");
            if (choices.Count != 4) throw record.Error($"{choices.Count} choices; expected 4");
            var answer = record.Required("answer");
            int index = answer.ValueKind switch
            {
                JsonValueKind.String => answer.GetString() is { Length: 1 } s ? MmluQuestion.Letters.IndexOf(s[0]) : -1,
                JsonValueKind.Number => answer.TryGetInt32(out int i) && i is >= 0 and < 4 ? i : -1,
                _ => -1,
            };
            if (index < 0) throw record.Error($"answer {answer.GetRawText()} is not one of \"A\"..\"D\" or 0..3");
            questions.Add(new MmluQuestion(record.String("subject"), record.String("question"), choices, index));
        }
        return questions;
    }

    /// <summary>
    /// Per subject (ordinal order), the questions of <paramref name="split"/> and the examples used as shots: a folder
    /// gives the questions from its split folder and the shots from dev/; a JSONL file takes the first
    /// <paramref name="shots"/> questions of each subject as its shots and the rest as its questions.
    /// </summary>
    public static SortedDictionary<string, (List<MmluQuestion> Questions, List<MmluQuestion> Dev)> LoadWithShots(string path, string split, int shots)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(shots);
        var subjects = new SortedDictionary<string, (List<MmluQuestion>, List<MmluQuestion>)>(StringComparer.Ordinal);
        if (Directory.Exists(path))
        {
            var dev = Directory.Exists(Path.Combine(path, "dev")) ? ReadSplit(path, "dev") : new();
            foreach (var (subject, questions) in ReadSplit(path, split))
                subjects[subject] = (questions, dev.TryGetValue(subject, out var shotList) ? shotList : []);
        }
        else if (File.Exists(path))
        {
            foreach (var group in ReadJsonl(path).GroupBy(q => q.Subject).OrderBy(g => g.Key, StringComparer.Ordinal))
            {
                var all = group.ToList();
                int taken = Math.Min(shots, all.Count - 1);
                subjects[group.Key] = (all.GetRange(taken, all.Count - taken), all.GetRange(0, taken));
            }
        }
        else throw new FileNotFoundException($"MMLU set not found: {path} (a folder with dev/ and {split}/, or a JSONL file)", path);
        if (subjects.Count == 0) throw new DataFormatException(path, "top level", $"no MMLU questions in split \"{split}\"");
        return subjects;
    }

    /// <summary>"high_school_physics_test.csv" -> "high_school_physics".</summary>
    public static string SubjectOf(string path)
    {
        string name = Path.GetFileNameWithoutExtension(path);
        foreach (var suffix in (string[])["_dev", "_val", "_test"])
            if (name.EndsWith(suffix, StringComparison.Ordinal)) return name[..^suffix.Length];
        return name;
    }
}

/// <summary>
/// The Hendrycks MMLU prompt (hendrycks/test evaluate.py), kept byte for byte, including the double
/// space its format_subject leaves after "about" ("about  high school physics.").
/// </summary>
public static class MmluPrompt
{
    /// <summary>" high school physics": each underscore-separated word with a leading space.</summary>
    public static string FormatSubject(string subject) => string.Concat(subject.Split('_').Select(word => " " + word));

    /// <summary>"{q}\nA. ..\nB. ..\nC. ..\nD. ..\nAnswer:" and, for a shot, " {X}\n\n".</summary>
    public static string FormatExample(MmluQuestion question, bool includeAnswer)
    {
        var text = new StringBuilder(question.Question);
        for (int i = 0; i < question.Choices.Count; i++)
            text.Append('\n').Append(MmluQuestion.Letters[i]).Append(". ").Append(question.Choices[i]);
        text.Append("\nAnswer:");
        if (includeAnswer) text.Append(' ').Append(question.AnswerLetter).Append("\n\n");
        return text.ToString();
    }

    /// <summary>Header, the first <paramref name="shots"/> dev examples with answers, then the question ending in "Answer:".</summary>
    public static string Build(MmluQuestion question, IReadOnlyList<MmluQuestion> dev, int shots = 5)
    {
        if (shots < 0 || shots > dev.Count)
            throw new ArgumentOutOfRangeException(nameof(shots), $"{shots} shots asked for, {dev.Count} dev examples available");
        var prompt = new StringBuilder($"The following are multiple choice questions (with answers) about {FormatSubject(question.Subject)}.\n\n");
        for (int i = 0; i < shots; i++) prompt.Append(FormatExample(dev[i], includeAnswer: true));
        prompt.Append(FormatExample(question, includeAnswer: false));
        return prompt.ToString();
    }
}
