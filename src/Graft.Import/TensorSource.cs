using System.Text.Json;
using Graft.Tensors;
using Graft.Tensors.PyTorch;
using Graft.Tensors.SafeTensors;

namespace Graft.Import;

/// <summary>One tensor an author's checkpoint holds: its name there, stored type, shape and file.</summary>
public sealed record SourceTensor(string Name, DType DType, int[] Shape, string File)
{
    public long ByteLength => Tensor.ShapeLength(Shape) * DType.SizeOf();
}

/// <summary>
/// The tensors of a published checkpoint, whatever its files: safetensors (one file or shards with
/// model.safetensors.index.json) or PyTorch (.bin/.pth/.pt, one file or shards with pytorch_model.bin.index.json).
/// Tensors are read one at a time (<see cref="Load"/>), so a checkpoint of any size is converted in the memory of its
/// largest tensor. Nothing is ever written to the checkpoint's files.
/// </summary>
public sealed class TensorSource : IDisposable
{
    private readonly Dictionary<string, SourceTensor> _byName = new(StringComparer.Ordinal);
    private readonly List<SourceTensor> _tensors = [];
    private readonly List<IDisposable> _open = [];
    private readonly Dictionary<string, SafeTensorsFile> _safetensors = new(StringComparer.Ordinal);
    private readonly Dictionary<string, PyTorchCheckpointFile> _pytorch = new(StringComparer.Ordinal);

    private TensorSource(string path) => Path = path;

    /// <summary>The file or folder the tensors come from.</summary>
    public string Path { get; }

    public IReadOnlyList<SourceTensor> Tensors => _tensors;

    /// <summary>Bytes of all tensors as stored.</summary>
    public long TotalBytes => _tensors.Sum(t => t.ByteLength);

    /// <summary>The checkpoint files a folder holds (safetensors preferred, as transformers does), or the one file given.</summary>
    public static TensorSource Open(string path)
    {
        var source = new TensorSource(path);
        try
        {
            if (File.Exists(path)) source.AddFile(path);
            else if (Directory.Exists(path)) source.AddFolder(path);
            else throw new FileNotFoundException($"'{path}' is neither a checkpoint file nor a folder", path);
            return source;
        }
        catch
        {
            source.Dispose();
            throw;
        }
    }

    /// <summary>Whether a folder holds checkpoint weights this reader opens.</summary>
    public static bool HasWeights(string folder) => Directory.Exists(folder) && WeightFiles(folder).Count > 0;

    private void AddFolder(string folder)
    {
        var files = WeightFiles(folder);
        if (files.Count == 0)
            throw new FileNotFoundException($"'{folder}' holds no checkpoint weights (model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json or *.safetensors / *.bin / *.pth)", folder);
        foreach (var file in files) AddFile(file);
    }

    /// <summary>The weight files of a folder: those an index names, else the single file, else every checkpoint file.</summary>
    private static List<string> WeightFiles(string folder)
    {
        foreach (var index in new[] { "model.safetensors.index.json", "pytorch_model.bin.index.json" })
        {
            string path = System.IO.Path.Combine(folder, index);
            if (File.Exists(path)) return IndexFiles(path);
        }
        foreach (var single in new[] { "model.safetensors", "pytorch_model.bin" })
        {
            string path = System.IO.Path.Combine(folder, single);
            if (File.Exists(path)) return [path];
        }
        return Directory.EnumerateFiles(folder)
            .Where(f => f.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".bin", StringComparison.OrdinalIgnoreCase)
                || f.EndsWith(".pth", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".pt", StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal).ToList();
    }

    private static List<string> IndexFiles(string index)
    {
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(index));
            if (!document.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ImportException(index, "has no weight_map object", "weight_map");
            string folder = System.IO.Path.GetDirectoryName(index)!;
            var files = new List<string>();
            foreach (var entry in map.EnumerateObject())
            {
                string file = entry.Value.GetString() ?? throw new ImportException(index, "must name a file", $"weight_map.{entry.Name}");
                if (file.Contains('/') || file.Contains('\\') || file == "..")
                    throw new ImportException(index, $"names '{file}', outside the folder", $"weight_map.{entry.Name}");
                string path = System.IO.Path.Combine(folder, file);
                if (!files.Contains(path)) files.Add(path);
            }
            foreach (var file in files)
                if (!File.Exists(file)) throw new ImportException(index, $"names {System.IO.Path.GetFileName(file)}, which is not in the folder", "weight_map");
            return files;
        }
        catch (JsonException e)
        {
            throw new ImportException(index, $"is not valid JSON: {e.Message}");
        }
    }

    private void AddFile(string file)
    {
        Span<byte> head = stackalloc byte[8];
        using (var stream = File.OpenRead(file)) head = head[..stream.ReadAtLeast(head, 8, throwOnEndOfStream: false)];
        if (PyTorchCheckpointFile.LooksLikeCheckpoint(head))
        {
            var checkpoint = PyTorchCheckpointFile.Open(file);
            _open.Add(checkpoint);
            _pytorch[file] = checkpoint;
            foreach (var info in checkpoint.Tensors) Add(new SourceTensor(info.Name, info.GraftDType, info.Shape, file));
        }
        else
        {
            var checkpoint = SafeTensorsFile.Open(file);
            _open.Add(checkpoint);
            _safetensors[file] = checkpoint;
            foreach (var info in checkpoint.Tensors) Add(new SourceTensor(info.Name, info.DType, info.Shape, file));
        }
    }

    private void Add(SourceTensor tensor)
    {
        if (!_byName.TryAdd(tensor.Name, tensor))
            throw new ImportException(tensor.File, $"is also in {System.IO.Path.GetFileName(_byName[tensor.Name].File)}: a tensor must be in one file only", tensor.Name);
        _tensors.Add(tensor);
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public SourceTensor Info(string name) =>
        _byName.TryGetValue(name, out var tensor) ? tensor : throw new ImportException(Path, "is not in this checkpoint", name);

    /// <summary>A float tensor in its stored type (F32, F16, BF16; PyTorch's float64 as F32). Read-only or a copy of its own.</summary>
    public Tensor Load(string name)
    {
        var info = Info(name);
        if (info.DType is not (DType.F32 or DType.F16 or DType.BF16))
            throw new ImportException(info.File, $"is {info.DType.SafeTensorsName()}, not a float tensor", name);
        return _pytorch.TryGetValue(info.File, out var pytorch) ? pytorch.Load(name) : _safetensors[info.File].Load(name);
    }

    public void Dispose()
    {
        foreach (var file in _open) file.Dispose();
        _open.Clear();
    }
}
