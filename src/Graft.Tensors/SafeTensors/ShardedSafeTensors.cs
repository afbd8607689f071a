using System.Text.Json;

namespace Graft.Tensors.SafeTensors;

/// <summary>
/// A checkpoint split over several safetensors files, described by a <c>model.safetensors.index.json</c>:
/// <c>{"metadata": {...}, "weight_map": {"tensor name": "shard file name", ...}}</c>.
/// </summary>
/// <remarks>
/// Every shard is opened (mapped, header validated) up front, and the index must agree with the shards exactly:
/// each shard exists beside the index, each mapped tensor is in its shard, every tensor a shard holds is mapped
/// to it, and no tensor is stored in two shards. Loaded tensors follow <see cref="SafeTensorsFile.Load"/>'s rules.
/// </remarks>
public sealed class ShardedSafeTensors : ISafeTensorsReader
{
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly Dictionary<string, SafeTensorsFile> _shardOf;

    private ShardedSafeTensors(string indexPath, List<SafeTensorsFile> shards, Dictionary<string, SafeTensorsFile> shardOf,
        List<SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = indexPath;
        Shards = shards;
        _shardOf = shardOf;
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>The index file.</summary>
    public string Path { get; }

    /// <summary>The shard files, in order of first appearance in the weight map.</summary>
    public IReadOnlyList<SafeTensorsFile> Shards { get; }

    /// <summary>The tensors in weight-map order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>The index's metadata; values that are not JSON strings are given as their JSON text (e.g. "total_size").</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static ShardedSafeTensors Open(string indexPath) => Open(indexPath, SafeTensorsLimits.Default);

    public static ShardedSafeTensors Open(string indexPath, SafeTensorsLimits limits)
    {
        var (weightMap, metadata) = ReadIndex(indexPath, limits);
        var folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(indexPath))!;
        var shards = new List<SafeTensorsFile>();
        try
        {
            var byFileName = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            var shardOf = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            var tensors = new List<SafeTensorInfo>(weightMap.Count);
            foreach (var (tensor, shardName) in weightMap)
            {
                if (!byFileName.TryGetValue(shardName, out var shard))
                {
                    var shardPath = System.IO.Path.Combine(folder, shardName);
                    if (!File.Exists(shardPath))
                        throw new SafeTensorsException(indexPath, $"shard '{shardName}' does not exist in {folder}", tensor);
                    shard = SafeTensorsFile.Open(shardPath, limits);
                    shards.Add(shard);
                    byFileName.Add(shardName, shard);
                }
                if (!shard.Contains(tensor))
                    throw new SafeTensorsException(indexPath, $"the weight map puts it in shard '{shardName}', which does not hold it", tensor);
                shardOf.Add(tensor, shard);
                tensors.Add(shard.Info(tensor));
            }
            foreach (var shard in shards)
            {
                foreach (var info in shard.Tensors)
                {
                    if (!shardOf.TryGetValue(info.Name, out var mapped))
                        throw new SafeTensorsException(indexPath, $"shard '{System.IO.Path.GetFileName(shard.Path)}' holds it, but the weight map does not list it", info.Name);
                    if (mapped != shard)
                        throw new SafeTensorsException(shard.Path, $"is also stored in shard '{System.IO.Path.GetFileName(mapped.Path)}', where the weight map puts it", info.Name);
                }
            }
            return new ShardedSafeTensors(indexPath, shards, shardOf, tensors, metadata);
        }
        catch
        {
            foreach (var shard in shards) shard.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _shardOf.ContainsKey(name);

    public SafeTensorInfo Info(string name) => Shard(name).Info(name);

    /// <summary>The shard holding a tensor.</summary>
    public SafeTensorsFile Shard(string name) =>
        _shardOf.TryGetValue(name, out var shard) ? shard : throw new SafeTensorsException(Path, "no such tensor in this checkpoint", name);

    public ReadOnlySpan<byte> RawBytes(string name) => Shard(name).RawBytes(name);

    public Tensor Load(string name) => Shard(name).Load(name);

    public float[] ReadFloats(string name) => Shard(name).ReadFloats(name);

    public long[] ReadIntegers(string name) => Shard(name).ReadIntegers(name);

    public void Dispose()
    {
        foreach (var shard in Shards) shard.Dispose();
    }

    private static (List<KeyValuePair<string, string>> WeightMap, Dictionary<string, string> Metadata) ReadIndex(string indexPath, SafeTensorsLimits limits)
    {
        byte[] bytes;
        try
        {
            var length = new FileInfo(indexPath).Length;
            if (length > limits.MaxHeaderBytes)
                throw new SafeTensorsException(indexPath, $"index is {length} bytes, over the {limits.MaxHeaderBytes}-byte limit");
            bytes = File.ReadAllBytes(indexPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new SafeTensorsException(indexPath, $"cannot read the index: {e.Message}", null, null, e);
        }

        List<KeyValuePair<string, string>>? weightMap = null;
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        bool sawMetadata = false;
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 64 });
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                throw new SafeTensorsException(indexPath, "index is not a JSON object", byteOffset: reader.TokenStartIndex);
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                long keyOffset = reader.TokenStartIndex;
                string key = reader.GetString()!;
                if ((key == "weight_map" && weightMap is not null) || (key == "metadata" && sawMetadata))
                    throw new SafeTensorsException(indexPath, $"'{key}' appears twice", byteOffset: keyOffset);
                reader.Read();
                if (key == "weight_map") weightMap = ReadWeightMap(indexPath, ref reader);
                else if (key == "metadata")
                {
                    sawMetadata = true;
                    ReadMetadata(indexPath, ref reader, metadata);
                }
                else throw new SafeTensorsException(indexPath, $"unexpected key '{key}' (an index holds metadata and weight_map)", byteOffset: keyOffset);
            }
            if (reader.Read()) throw new SafeTensorsException(indexPath, "content after the index object", byteOffset: reader.TokenStartIndex);
        }
        catch (JsonException e)
        {
            throw new SafeTensorsException(indexPath, $"index is not valid JSON: {e.Message}", null, null, e);
        }
        catch (InvalidOperationException e)
        {
            throw new SafeTensorsException(indexPath, $"index holds an invalid string: {e.Message}", null, reader.TokenStartIndex, e);
        }
        if (weightMap is null) throw new SafeTensorsException(indexPath, "index has no weight_map");
        if (weightMap.Count == 0) throw new SafeTensorsException(indexPath, "weight_map is empty");
        return (weightMap, metadata);
    }

    private static List<KeyValuePair<string, string>> ReadWeightMap(string indexPath, ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new SafeTensorsException(indexPath, $"weight_map is {reader.TokenType}, not an object of tensor name to shard file", byteOffset: reader.TokenStartIndex);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var entries = new List<KeyValuePair<string, string>>();
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            long keyOffset = reader.TokenStartIndex;
            string tensor = reader.GetString()!;
            if (!seen.Add(tensor)) throw new SafeTensorsException(indexPath, "appears twice in weight_map", tensor, keyOffset);
            reader.Read();
            if (reader.TokenType != JsonTokenType.String)
                throw new SafeTensorsException(indexPath, $"weight_map value is {reader.TokenType}, not a shard file name", tensor, reader.TokenStartIndex);
            string shard = reader.GetString()!;
            if (shard.Length == 0 || shard is "." or ".." || shard.IndexOfAny(['/', '\\']) >= 0 || System.IO.Path.IsPathRooted(shard))
                throw new SafeTensorsException(indexPath, $"shard '{shard}' is not a plain file name beside the index", tensor, reader.TokenStartIndex);
            entries.Add(new(tensor, shard));
        }
        return entries;
    }

    private static string RawText(ref Utf8JsonReader reader)
    {
        using var value = JsonDocument.ParseValue(ref reader);
        return value.RootElement.GetRawText();
    }

    private static void ReadMetadata(string indexPath, ref Utf8JsonReader reader, Dictionary<string, string> metadata)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new SafeTensorsException(indexPath, $"metadata is {reader.TokenType}, not an object", byteOffset: reader.TokenStartIndex);
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            long keyOffset = reader.TokenStartIndex;
            string key = reader.GetString()!;
            reader.Read();
            string value = reader.TokenType == JsonTokenType.String ? reader.GetString()! : RawText(ref reader);
            if (!metadata.TryAdd(key, value)) throw new SafeTensorsException(indexPath, $"metadata key '{key}' appears twice", byteOffset: keyOffset);
        }
    }
}
