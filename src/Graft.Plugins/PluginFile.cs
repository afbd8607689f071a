using System.Security.Cryptography;
using Graft.Models.Llm;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Plugins;

/// <summary>
/// A plug-in on disk: a folder NAME.graft/ holding plugin.json (<see cref="PluginManifest"/>) and plugin.safetensors
/// (the plug-in's own tensors, F32, nothing of the base).
/// </summary>
/// <remarks>
/// Saving writes each file to a temporary file beside it and renames it into place, tensors first, then plugin.json,
/// which records the tensors file's SHA-256: a crash between the two renames leaves a pair that loading refuses
/// rather than a plug-in that runs with tensors of another save. Loading refuses, saying what differs: another base
/// (architecture, shapes, weights fingerprint), another vision front end, an unknown design, a missing, extra,
/// mis-shaped or non-F32 tensor.
/// </remarks>
public static class PluginFile
{
    public const string TensorsFileName = "plugin.safetensors";

    /// <summary>The designs this build can load.</summary>
    public static IReadOnlyList<string> Designs { get; } = [Bridge.DesignName, Mma.DesignName, InnerAdaptor.DesignName, VisualExperts.DesignName, Wings.DesignName];

    /// <summary>
    /// Writes <paramref name="plugin"/> to <paramref name="folder"/> (created if needed); returns the manifest as written.
    /// <paramref name="training"/>, when given, is the provenance plugin.json records instead of the plug-in's own (a trainer's
    /// account of how it was trained); <paramref name="savedFor"/> the base it is saved for instead of the one it was made on
    /// (Bridge's full mode trains the LLM with the projector, so the projector belongs to the new base);
    /// <paramref name="chatTemplate"/> the chat template its conversations were trained in, instead of the one it records.
    /// </summary>
    public static PluginManifest Save(IPlugin plugin, string folder, System.Text.Json.Nodes.JsonObject? training = null, BaseDescription? savedFor = null,
        RecordedChatTemplate? chatTemplate = null)
    {
        ArgumentNullException.ThrowIfNull(plugin);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        string full = Path.GetFullPath(folder);
        if (plugin.Base.Folder.Length > 0 && IsWithin(full, Path.GetFullPath(plugin.Base.Folder)))
            throw new ArgumentException($"'{folder}' is inside the base checkpoint folder '{plugin.Base.Folder}', which is only ever read", nameof(folder));
        return Write(full, plugin.Manifest with
        {
            Training = training ?? plugin.Manifest.Training,
            Base = savedFor ?? plugin.Manifest.Base,
            ChatTemplate = chatTemplate ?? plugin.Manifest.ChatTemplate,
        }, plugin.Parameters);
    }

    /// <summary>
    /// Writes a plug-in folder from a manifest and named tensors (the parts and the tensors file's SHA-256 are filled in):
    /// how a plug-in made elsewhere (an imported checkpoint) becomes a Graft plug-in. <see cref="Load"/> checks it as any other.
    /// </summary>
    public static PluginManifest Write(string folder, PluginManifest manifest, IReadOnlyList<PluginParameter> parameters)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        ArgumentNullException.ThrowIfNull(parameters);
        string full = Path.GetFullPath(folder);
        Directory.CreateDirectory(full);
        string tensorsPath = Path.Combine(full, TensorsFileName);
        SafeTensorsWriter.Write(tensorsPath, parameters.Select(p => KeyValuePair.Create(p.Name, p.Tensor)),
            new Dictionary<string, string> { ["format"] = "pt", ["graft_design"] = manifest.Design });
        var written = manifest with
        {
            TensorParts = parameters.GroupBy(p => p.Part).ToDictionary(g => g.Key, g => g.Select(p => p.Name).ToArray()),
            TensorsSha256 = Sha256OfFile(tensorsPath),
        };
        AtomicFile.WriteAllText(Path.Combine(full, PluginManifest.FileName), written.ToJson());
        return written;
    }

    /// <summary>plugin.json of a plug-in folder.</summary>
    public static PluginManifest ReadManifest(string folder)
    {
        string path = Path.Combine(folder, PluginManifest.FileName);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"plug-in folder '{folder}' does not exist");
        if (!File.Exists(path)) throw new PluginFormatException(path, "is missing: a plug-in folder holds plugin.json and plugin.safetensors");
        return PluginManifest.Parse(File.ReadAllText(path), path);
    }

    /// <summary>
    /// Loads the plug-in in <paramref name="folder"/> onto <paramref name="baseModel"/>, checking the base and (when given)
    /// the vision front end against plugin.json, then every tensor.
    /// </summary>
    public static IPlugin Load(string folder, DecoderModel baseModel, IVisionFrontEnd? vision = null)
    {
        ArgumentNullException.ThrowIfNull(baseModel);
        var manifest = ReadManifest(folder);
        string manifestPath = Path.Combine(folder, PluginManifest.FileName);
        var differences = manifest.Base.Differences(BaseDescription.Of(baseModel)).ToList();
        if (vision is not null)
        {
            if (manifest.Vision is null) differences.Add($"vision: the plug-in expects no vision front end, given {vision.Kind}");
            else differences.AddRange(manifest.Vision.Differences(VisionDescription.Of(vision)));
        }
        if (differences.Count > 0) throw new PluginCompatibilityException(folder, differences);

        var expected = manifest.Design switch
        {
            Bridge.DesignName => Bridge.ExpectedShapes(manifest, manifestPath),
            Mma.DesignName => Mma.ExpectedShapes(manifest, manifestPath),
            InnerAdaptor.DesignName => InnerAdaptor.ExpectedShapes(manifest, manifestPath),
            VisualExperts.DesignName => VisualExperts.ExpectedShapes(manifest, manifestPath),
            Wings.DesignName => Wings.ExpectedShapes(manifest, manifestPath),
            _ => throw new PluginFormatException(manifestPath, $"design '{manifest.Design}' is not one this build loads ({string.Join(", ", Designs)})", "design"),
        };
        string tensorsPath = Path.Combine(folder, TensorsFileName);
        if (!File.Exists(tensorsPath)) throw new PluginFormatException(tensorsPath, "is missing: a plug-in folder holds plugin.json and plugin.safetensors");
        Dictionary<string, Tensor> tensors;
        using (var file = SafeTensorsFile.Open(tensorsPath))
            tensors = ReadTensors(file, expected, manifest.Design);
        if (manifest.TensorsSha256 is null)
            throw new PluginFormatException(manifestPath, "is missing (plugin.json must name the plugin.safetensors it was saved with)", "tensors.sha256");
        string sha = Sha256OfFile(tensorsPath);
        if (!string.Equals(sha, manifest.TensorsSha256, StringComparison.OrdinalIgnoreCase))
            throw new PluginFormatException(tensorsPath, $"has SHA-256 {sha}, but plugin.json was saved with {manifest.TensorsSha256}: the two files come from different saves");

        return manifest.Design switch
        {
            Bridge.DesignName => Bridge.Restore(manifest, tensors, baseModel, vision, manifestPath),
            Mma.DesignName => Mma.Restore(manifest, tensors, baseModel, vision, manifestPath),
            InnerAdaptor.DesignName => InnerAdaptor.Restore(manifest, tensors, baseModel, vision, manifestPath),
            VisualExperts.DesignName => VisualExperts.Restore(manifest, tensors, baseModel, manifestPath),
            Wings.DesignName => Wings.Restore(manifest, tensors, baseModel, vision, manifestPath),
            _ => throw new PluginFormatException(manifestPath, $"design '{manifest.Design}' is not one this build loads", "design"),
        };
    }

    /// <summary>Every expected tensor, present, F32 and of its shape, and nothing else; copied into trainable F32 tensors.</summary>
    private static Dictionary<string, Tensor> ReadTensors(SafeTensorsFile file, IReadOnlyDictionary<string, int[]> expected, string design)
    {
        foreach (var info in file.Tensors)
            if (!expected.ContainsKey(info.Name))
                throw new PluginFormatException(file.Path, $"is not a tensor of a {design} plug-in with this plugin.json", info.Name);
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, shape) in expected)
        {
            if (!file.Contains(name))
                throw new PluginFormatException(file.Path, $"is missing (a {design} plug-in needs it, shape [{string.Join(", ", shape)}])", name);
            var info = file.Info(name);
            if (!info.Shape.AsSpan().SequenceEqual(shape))
                throw new PluginFormatException(file.Path, $"has shape [{string.Join(", ", info.Shape)}], plugin.json implies [{string.Join(", ", shape)}]", name);
            if (info.DType != DType.F32) throw new PluginFormatException(file.Path, $"is {info.DType.SafeTensorsName()}, not F32", name);
            var tensor = Tensor.Parameter(file.ReadFloats(name), shape);
            tensor.Name = name;
            tensors[name] = tensor;
        }
        return tensors;
    }

    private static string Sha256OfFile(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    private static bool IsWithin(string path, string folder)
    {
        string root = Path.TrimEndingDirectorySeparator(folder) + Path.DirectorySeparatorChar;
        return string.Equals(Path.TrimEndingDirectorySeparator(path), Path.TrimEndingDirectorySeparator(folder), StringComparison.Ordinal)
            || path.StartsWith(root, StringComparison.Ordinal);
    }
}
