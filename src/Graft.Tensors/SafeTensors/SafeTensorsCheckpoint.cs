namespace Graft.Tensors.SafeTensors;

/// <summary>Opens a checkpoint given as a folder or a file, single-file or sharded.</summary>
public static class SafeTensorsCheckpoint
{
    public const string SingleFileName = "model.safetensors";

    /// <summary>
    /// A <c>.safetensors</c> file, an index <c>.json</c> file, or a folder holding <c>model.safetensors</c>
    /// (preferred, as Hugging Face does) or <c>model.safetensors.index.json</c>.
    /// </summary>
    public static ISafeTensorsReader Open(string path, SafeTensorsLimits? limits = null)
    {
        limits ??= SafeTensorsLimits.Default;
        if (File.Exists(path))
            return path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? ShardedSafeTensors.Open(path, limits) : SafeTensorsFile.Open(path, limits);
        if (!Directory.Exists(path)) throw new SafeTensorsException(path, "no such file or folder");
        var single = Path.Combine(path, SingleFileName);
        if (File.Exists(single)) return SafeTensorsFile.Open(single, limits);
        var index = Path.Combine(path, ShardedSafeTensors.IndexFileName);
        if (File.Exists(index)) return ShardedSafeTensors.Open(index, limits);
        var found = Directory.EnumerateFiles(path)
            .Select(Path.GetFileName)
            .Where(n => n!.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) || n.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal)
            .ToList();
        throw new SafeTensorsException(path,
            $"neither {SingleFileName} nor {ShardedSafeTensors.IndexFileName} is here; found " +
            (found.Count == 0 ? "no .safetensors or .json files" : string.Join(", ", found)));
    }
}
