using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Models;

/// <summary>
/// A folder Graft writes whole or not at all: files go into a hidden staging folder beside the target, and
/// <see cref="Commit"/> renames it into place (moving an older version aside first, then deleting it). A target
/// that exists, is not empty and holds no <see cref="MarkerFileName"/> was not written by Graft, and is only
/// replaced when the caller asks. Disposing without committing removes the staging folder.
/// </summary>
public sealed class CheckpointFolder : IDisposable
{
    /// <summary>The file that marks a folder as Graft's own output (and says what kind of folder it is).</summary>
    public const string MarkerFileName = "written_by_graft.json";

    private static readonly JsonWriterOptions JsonOptions = new()
    {
        Indented = true,
        NewLine = "\n",
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private readonly string _kind;
    private bool _committed;

    private CheckpointFolder(string target, string staging, string kind)
    {
        Target = target;
        Staging = staging;
        _kind = kind;
    }

    /// <summary>The folder that will exist after <see cref="Commit"/>.</summary>
    public string Target { get; }

    /// <summary>Where the files are written until then.</summary>
    public string Staging { get; }

    /// <param name="kind">What the folder holds ("decoder", "clip_vision", ...), recorded in the marker.</param>
    /// <param name="overwrite">Replace the target even when it was not written by Graft.</param>
    public static CheckpointFolder Begin(string folder, string kind, bool overwrite = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        ArgumentException.ThrowIfNullOrEmpty(kind);
        string target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        if (File.Exists(target)) throw new IOException($"{target} is a file, not a folder");
        if (!overwrite && Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any() && !IsGraftFolder(target))
            throw new IOException($"{target} is not empty and was not written by Graft (it has no {MarkerFileName}); refusing to replace it unless asked to overwrite");
        string parent = Path.GetDirectoryName(target) ?? throw new IOException($"{target} has no parent folder to stage in");
        Directory.CreateDirectory(parent);
        string staging = Path.Combine(parent, $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(staging);
        return new CheckpointFolder(target, staging, kind);
    }

    /// <summary>Whether <paramref name="folder"/> holds the marker Graft writes into its folders.</summary>
    public static bool IsGraftFolder(string folder) => File.Exists(Path.Combine(folder, MarkerFileName));

    /// <summary>The staging path of <paramref name="relativePath"/>, its folder created.</summary>
    public string PathOf(string relativePath)
    {
        if (_committed) throw new InvalidOperationException($"{Target} is already committed");
        string path = Path.GetFullPath(Path.Combine(Staging, relativePath));
        if (!path.StartsWith(Staging + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new ArgumentException($"'{relativePath}' leaves the folder being written", nameof(relativePath));
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        return path;
    }

    public void WriteText(string relativePath, string text)
    {
        using var stream = new FileStream(PathOf(relativePath), FileMode.CreateNew, FileAccess.Write);
        stream.Write(new UTF8Encoding(false).GetBytes(text));
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Indented JSON (two spaces, LF, readable non-ASCII) followed by a newline.</summary>
    public void WriteJson(string relativePath, Action<Utf8JsonWriter> write)
    {
        var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, JsonOptions)) write(writer);
        WriteText(relativePath, Encoding.UTF8.GetString(buffer.ToArray()) + "\n");
    }

    public void WriteSafeTensors(string relativePath, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        SafeTensorsWriter.Write(PathOf(relativePath), tensors, metadata);

    /// <summary>
    /// The tensors converted to <paramref name="storedAs"/> (F32, BF16 or F16) for writing; those already of that type are
    /// written as they are.
    /// </summary>
    public static List<KeyValuePair<string, Tensor>> StoredAs(IEnumerable<KeyValuePair<string, Tensor>> tensors, DType storedAs)
    {
        if (storedAs is not (DType.F32 or DType.BF16 or DType.F16))
            throw new ArgumentException($"checkpoint weights are stored as F32, BF16 or F16, not {storedAs}", nameof(storedAs));
        return tensors.Select(t => new KeyValuePair<string, Tensor>(t.Key, t.Value.DType == storedAs ? t.Value : t.Value.ToDType(storedAs))).ToList();
    }

    /// <summary>config.json's torch_dtype for a stored type.</summary>
    public static string TorchDTypeName(DType stored) => stored switch
    {
        DType.F32 => "float32",
        DType.BF16 => "bfloat16",
        DType.F16 => "float16",
        _ => throw new ArgumentException($"{stored} is not a checkpoint weight type", nameof(stored)),
    };

    public void CopyFile(string source, string relativePath) => File.Copy(source, PathOf(relativePath));

    /// <summary>Writes the marker and puts the folder in place of the target.</summary>
    public void Commit()
    {
        WriteJson(MarkerFileName, w =>
        {
            w.WriteStartObject();
            w.WriteString("written_by", "Graft");
            w.WriteString("kind", _kind);
            w.WriteEndObject();
        });
        if (Directory.Exists(Target))
        {
            string old = Path.Combine(Path.GetDirectoryName(Target)!, $".{Path.GetFileName(Target)}.{Guid.NewGuid():N}.old");
            Directory.Move(Target, old);
            Directory.Move(Staging, Target);
            Directory.Delete(old, recursive: true);
        }
        else Directory.Move(Staging, Target);
        _committed = true;
    }

    public void Dispose()
    {
        if (!_committed && Directory.Exists(Staging)) Directory.Delete(Staging, recursive: true);
    }
}
