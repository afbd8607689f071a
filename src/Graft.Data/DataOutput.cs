using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Graft.Data;

/// <summary>
/// A folder that generated data is written into: created when missing, refused when it already holds
/// anything unless forced, every file written to a temporary name and renamed into place so a reader
/// never sees half a file.
/// </summary>
public sealed class DataOutput
{
    private readonly List<(string Path, long Bytes)> written = [];

    /// <param name="owned">Top-level names this generator writes; with <paramref name="force"/> they are removed first so no stale file survives.</param>
    public DataOutput(string folder, bool force, IEnumerable<string> owned)
    {
        Folder = Path.GetFullPath(folder);
        if (File.Exists(Folder)) throw new IOException($"{Folder} is a file, not a folder");
        if (Directory.Exists(Folder) && Directory.EnumerateFileSystemEntries(Folder).Any())
        {
            if (!force) throw new IOException($"{Folder} is not empty; pass --force to write over it");
            foreach (var name in owned)
            {
                string path = Path.Combine(Folder, name);
                if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
                else if (File.Exists(path)) File.Delete(path);
            }
        }
        Directory.CreateDirectory(Folder);
    }

    public string Folder { get; }

    /// <summary>Files written so far, relative to <see cref="Folder"/>, with their sizes.</summary>
    public IReadOnlyList<(string Path, long Bytes)> Written => written;

    public void WriteBytes(string relativePath, ReadOnlySpan<byte> bytes)
    {
        string path = Path.Combine(Folder, relativePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        Graft.Tensors.AtomicFile.WriteAllBytes(path, bytes);
        written.Add((relativePath.Replace('\\', '/'), bytes.Length));
    }

    public void WriteText(string relativePath, string text) => WriteBytes(relativePath, new UTF8Encoding(false).GetBytes(text));

    /// <summary>Writes JSON through <paramref name="write"/>: indented with LF, non-ASCII and &lt;image&gt; kept readable.</summary>
    public void WriteJson(string relativePath, Action<Utf8JsonWriter> write)
    {
        var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, JsonOptions))
            write(writer);
        buffer.WriteByte((byte)'\n');
        WriteBytes(relativePath, buffer.ToArray());
    }

    /// <summary>One compact JSON object per line.</summary>
    public void WriteJsonLines<T>(string relativePath, IEnumerable<T> items, Action<Utf8JsonWriter, T> write)
    {
        var buffer = new MemoryStream();
        foreach (var item in items)
        {
            using (var writer = new Utf8JsonWriter(buffer, JsonOptions with { Indented = false }))
                write(writer, item);
            buffer.WriteByte((byte)'\n');
        }
        WriteBytes(relativePath, buffer.ToArray());
    }

    private static readonly JsonWriterOptions JsonOptions = new()
    {
        Indented = true,
        NewLine = "\n",
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>"wrote 3 files (1.2 KiB) to DIR" then one line per top-level entry with its file count.</summary>
    public string Summary()
    {
        var text = new StringBuilder($"wrote {written.Count} files ({FormatBytes(written.Sum(w => w.Bytes))}) to {Folder}\n");
        foreach (var group in written.GroupBy(w => w.Path.Split('/')[0]).OrderBy(g => g.Key, StringComparer.Ordinal))
            text.Append($"  {group.Key}{(group.Count() > 1 || group.First().Path.Contains('/') ? $"/  {group.Count()} files" : "")}  {FormatBytes(group.Sum(w => w.Bytes))}\n");
        return text.ToString();
    }

    private static string FormatBytes(long bytes) => bytes switch
    {
        < 1024 => $"{bytes} B",
        < 1024 * 1024 => $"{bytes / 1024.0:0.0} KiB",
        _ => $"{bytes / (1024.0 * 1024):0.0} MiB",
    };
}
