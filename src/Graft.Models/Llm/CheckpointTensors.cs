using System.Text.Json;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Models.Llm;

/// <summary>The tensors of a Hugging Face folder: model.safetensors, or the shards named by model.safetensors.index.json.</summary>
internal sealed class CheckpointTensors : IDisposable
{
    private readonly Dictionary<string, SafeTensorsFile> _fileOf;
    private readonly List<SafeTensorsFile> _files;

    private CheckpointTensors(string path, List<SafeTensorsFile> files, Dictionary<string, SafeTensorsFile> fileOf)
    {
        Path = path;
        _files = files;
        _fileOf = fileOf;
        Tensors = fileOf.Select(entry => entry.Value.Info(entry.Key)).ToList();
    }

    /// <summary>The tensors the index lists (or the single file holds).</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>The single file or the index file, for messages about the checkpoint as a whole.</summary>
    public string Path { get; }

    public static CheckpointTensors Open(string folder)
    {
        var index = System.IO.Path.Combine(folder, "model.safetensors.index.json");
        var single = System.IO.Path.Combine(folder, "model.safetensors");
        if (File.Exists(index)) return OpenSharded(folder, index);
        if (!File.Exists(single)) throw new LlmConfigException(folder, "holds neither model.safetensors nor model.safetensors.index.json");
        var file = SafeTensorsFile.Open(single);
        return new CheckpointTensors(single, [file], file.Tensors.ToDictionary(t => t.Name, _ => file, StringComparer.Ordinal));
    }

    private static CheckpointTensors OpenSharded(string folder, string index)
    {
        var files = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        var fileOf = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new LlmConfigException(index, "has no weight_map object", "weight_map");
            foreach (var entry in map.EnumerateObject())
            {
                var shard = entry.Value.GetString() ?? throw new LlmConfigException(index, "shard name must be a string", tensor: entry.Name);
                if (shard != System.IO.Path.GetFileName(shard)) throw new LlmConfigException(index, $"shard '{shard}' is not a file in the folder", tensor: entry.Name);
                if (!files.TryGetValue(shard, out var file))
                {
                    var path = System.IO.Path.Combine(folder, shard);
                    if (!File.Exists(path)) throw new LlmConfigException(index, $"names shard '{shard}', which does not exist", tensor: entry.Name);
                    files[shard] = file = SafeTensorsFile.Open(path);
                }
                if (!file.Contains(entry.Name)) throw new LlmConfigException(index, $"places it in '{shard}', which does not hold it", tensor: entry.Name);
                fileOf[entry.Name] = file;
            }
            return new CheckpointTensors(index, [.. files.Values], fileOf);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            foreach (var f in files.Values) f.Dispose();
            throw new LlmConfigException(index, $"is not a valid index: {e.Message}");
        }
        catch
        {
            foreach (var f in files.Values) f.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _fileOf.ContainsKey(name);

    public SafeTensorInfo Info(string name) => Shard(name).Info(name);

    /// <summary>The file holding a tensor, for messages about it.</summary>
    public string FileOf(string name) => Shard(name).Path;

    public Tensor Load(string name) => Shard(name).Load(name);

    private SafeTensorsFile Shard(string name) =>
        _fileOf.TryGetValue(name, out var file) ? file : throw new LlmConfigException(Path, "no such tensor", tensor: name);

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
