using System.Text.Json;
using System.Text.Json.Nodes;
using Graft.Models;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Import;

/// <summary>
/// The folder an import writes, staged beside the target and put in place whole (<see cref="CheckpointFolder"/>): the
/// base, the tower and the plug-in, each tensor streamed from the author's files, and import.json recording where every
/// tensor came from.
/// </summary>
internal sealed class ImportJob : IDisposable
{
    private const long LargeTensorBytes = 32L << 20;
    private static readonly JsonSerializerOptions Indented = new(PluginManifest.JsonOptions) { WriteIndented = true };
    private readonly CheckpointFolder _folder;
    private readonly ImportRequest _request;
    private readonly JsonObject _provenance = new();
    private int _done;

    public ImportJob(ImportRequest request, string layout, int totalTensors)
    {
        _request = request;
        Layout = layout;
        Total = totalTensors;
        string output = Path.GetFullPath(request.Output);
        foreach (var input in new[] { request.Source, request.Base, request.Vision })
            if (input is not null && IsWithin(output, Path.GetFullPath(input)) || input is not null && IsWithin(Path.GetFullPath(input), output))
                throw new ArgumentException($"--out '{request.Output}' and the checkpoint '{input}' overlap; an import never writes where it reads");
        _folder = CheckpointFolder.Begin(output, "import", request.Overwrite);
    }

    public string Layout { get; }
    public int Total { get; }
    public List<string> Notes { get; } = [];

    /// <summary>The staging path of a relative path (its folder created).</summary>
    public string PathOf(string relative) => _folder.PathOf(relative);

    public string FolderOf(string relative)
    {
        string path = _folder.PathOf(Path.Combine(relative, ".keep"));
        return Path.GetDirectoryName(path)!;
    }

    /// <summary>Streams the mapped tensors of <paramref name="destination"/> into one safetensors file, each in its stored type.</summary>
    public void WriteTensors(string relativePath, string part, IEnumerable<(TensorSource Source, MappedTensor Tensor)> tensors)
    {
        var list = tensors.ToList();
        var entries = list.Select(t => (t.Tensor.Target, t.Tensor.Source.DType, t.Tensor.Source.Shape)).ToList();
        var record = new JsonObject();
        foreach (var (source, tensor) in list)
            record[tensor.Target] = $"{tensor.Source.Name} in {Path.GetFileName(tensor.Source.File)} ({tensor.Source.DType.SafeTensorsName()})";
        _provenance[relativePath] = record;
        SafeTensorsWriter.WriteStreamed(PathOf(relativePath), entries, i => list[i].Source.Load(list[i].Tensor.Source.Name),
            new Dictionary<string, string> { ["format"] = "pt" },
            i =>
            {
                _request.Progress?.Invoke(new ImportProgress(++_done, Total, part, list[i].Tensor.Target, list[i].Tensor.Source.ByteLength));
                // A large tensor read into memory is garbage once written; collect it now rather than letting several pile up
                // on the large object heap, so the import holds about one tensor at a time.
                if (list[i].Tensor.Source.ByteLength >= LargeTensorBytes) GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
            });
    }

    /// <summary>The plug-in's tensors as trainable F32 copies, named as the design names them.</summary>
    public List<PluginParameter> PluginTensors(IEnumerable<(TensorSource Source, MappedTensor Tensor)> tensors, Func<string, string> partOf, JsonObject record)
    {
        var parameters = new List<PluginParameter>();
        foreach (var (source, tensor) in tensors)
        {
            var loaded = source.Load(tensor.Source.Name);
            var copy = Tensor.Parameter(loaded.ToArray(), loaded.Shape);
            copy.Name = tensor.Target;
            parameters.Add(new PluginParameter(tensor.Target, partOf(tensor.Target), copy));
            record[tensor.Target] = $"{tensor.Source.Name} in {Path.GetFileName(tensor.Source.File)} ({tensor.Source.DType.SafeTensorsName()}, widened to F32)";
            _request.Progress?.Invoke(new ImportProgress(++_done, Total, "plug-in", tensor.Target, tensor.Source.ByteLength));
        }
        return parameters;
    }

    public void WriteJson(string relativePath, JsonNode node) => File.WriteAllText(PathOf(relativePath), node.ToJsonString(Indented) + "\n");

    public void CopyFile(string source, string relativePath) => File.Copy(source, PathOf(relativePath));

    /// <summary>Copies the tokenizer and generation files a Hugging Face folder has.</summary>
    public void CopyTokenizer(string sourceFolder, string baseFolder)
    {
        foreach (var name in DecoderCheckpointWriter.TokenizerFileNames.Append("generation_config.json"))
        {
            string from = Path.Combine(sourceFolder, name);
            if (File.Exists(from)) CopyFile(from, Path.Combine(baseFolder, name));
        }
    }

    /// <summary>Writes plugin.json and plugin.safetensors, then loads the plug-in back onto the written base as a check.</summary>
    public string WritePlugin(string name, PluginManifest manifest, List<PluginParameter> parameters, DecoderModel model, IVisionFrontEnd? vision)
    {
        string folder = FolderOf(name + ".graft");
        PluginFile.Write(folder, manifest, parameters);
        PluginFile.Load(folder, model, vision);
        return folder;
    }

    public ImportResult Commit(string baseRelative, string? visionRelative, string pluginRelative, bool baseChanged)
    {
        var report = new JsonObject
        {
            ["layout"] = Layout,
            ["source"] = Path.GetFullPath(_request.Source),
            ["base_source"] = _request.Base is null ? null : Path.GetFullPath(_request.Base),
            ["vision_source"] = _request.Vision is null ? null : Path.GetFullPath(_request.Vision),
            ["base_changed_by_authors"] = baseChanged,
            ["notes"] = new JsonArray(Notes.Select(n => (JsonNode?)n).ToArray()),
            ["tensors"] = _provenance,
        };
        WriteJson("import.json", report);
        _folder.Commit();
        string output = _folder.Target;
        return new ImportResult(Layout, output, Path.Combine(output, baseRelative), visionRelative is null ? null : Path.Combine(output, visionRelative),
            Path.Combine(output, pluginRelative), baseChanged, Notes);
    }

    public void Record(string key, JsonNode node) => _provenance[key] = node;

    public void Dispose() => _folder.Dispose();

    private static bool IsWithin(string path, string folder)
    {
        string root = Path.TrimEndingDirectorySeparator(folder) + Path.DirectorySeparatorChar;
        return string.Equals(Path.TrimEndingDirectorySeparator(path), Path.TrimEndingDirectorySeparator(folder), StringComparison.Ordinal)
            || path.StartsWith(root, StringComparison.Ordinal);
    }
}
