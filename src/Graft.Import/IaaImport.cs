using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Plugins;

namespace Graft.Import;

/// <summary>
/// IAA (360CVGroup/Inner-Adaptor-Architecture; released as qihoo360/Inner-Adaptor-Architecture): one checkpoint holding the
/// frozen Llama-3-8B-Instruct and two workflows, each a set of condition layers run after the frozen layers
/// ehce_layers = [0, 1, 5, 6, 10, 11, 15, 16, 20, 21, 25, 26, 30, 31] with its own embedding, final norm, head and
/// projector: multimodal (task_type "MM": model.condition_layers, embed_tokens_condition, norm_condition, lm_head_condtion,
/// mm_projector) and grounding ("G": the *_grounding copies and mm_projector_G). The Text workflow is the base alone.
/// Each workflow becomes an <see cref="InnerAdaptor"/> plug-in with its own embedding, norm and head, over the unchanged
/// base: NAME.graft (MM) and NAME-grounding.graft (G), served side by side on one base.
/// </summary>
internal static class IaaImport
{
    public const string Layout = "iaa";
    public const string Grounding = "grounding";

    /// <summary>The authors' ehce_layers (hard-coded in their LlamaModel for Llama-3-8B's 32 layers).</summary>
    public static readonly int[] EhceLayers = [0, 1, 5, 6, 10, 11, 15, 16, 20, 21, 25, 26, 30, 31];

    private static TensorRule[] Branch(string suffix, string projector, string branch) =>
    [
        new($@"model\.condition_layers{suffix}\.(\d+)\.(.*)", Destination.Plugin, "model.condition_layers.$1.$2") { Branch = branch },
        new($@"model\.embed_tokens_condition{suffix}\.weight", Destination.Plugin, "model.embed_tokens_condition.weight") { Branch = branch },
        new($@"model\.norm_condition{suffix}\.weight", Destination.Plugin, "model.norm_condition.weight") { Branch = branch },
        new($@"lm_head_condtion{suffix}\.weight", Destination.Plugin, "lm_head_condition.weight") { Branch = branch },
        new($@"model\.{projector}\.(0|2)\.(weight|bias)", Destination.Plugin, "mm_projector.$1.$2") { Branch = branch },
    ];

    public static readonly TensorMap Map = new(Layout,
    [
        .. Branch("_grounding", "mm_projector_G", Grounding),
        .. Branch("", "mm_projector", ""),
        new(LlavaImport.LlamaNames, Destination.Base, "$0"),
        new(LlavaImport.RotaryBuffer, Destination.Drop, "", LlavaImport.RotaryWhy),
        new(@"model\.vision_tower\..*", Destination.Drop, "", "IAA's builder loads the tower from mm_vision_tower, not from this copy"),
    ]);

    public static ImportResult Import(ImportRequest request)
    {
        string sourceFolder = request.Source;
        string name = request.Name ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(sourceFolder)));
        string configPath = Path.Combine(sourceFolder, "config.json");
        var config = HfConfigs.Read(configPath);
        if (request.Base is not null) throw new ArgumentException("--base: an IAA checkpoint holds its frozen base; leave --base out");
        string visionFolder = request.Vision
            ?? throw new ArgumentException($"--vision: IAA's code loads its CLIP tower by name (mm_vision_tower = {HfConfigs.String(config, "mm_vision_tower") ?? "?"}); download that folder and give it with --vision");
        using var source = TensorSource.Open(sourceFolder);
        using var vision = TensorSource.Open(visionFolder);
        var baseConfig = HfConfigs.LlamaBase(config, configPath, HfConfigs.String(config, "torch_dtype"));
        int layers = HfConfigs.Int(baseConfig, "num_hidden_layers")!.Value;
        int[] insertAfter = EhceLayers.Where(l => l < layers).ToArray();

        var mapped = Map.Map(source).Select(t => (Source: source, Tensor: t)).ToList();
        // Condition layers whose frozen layer the base does not have never run in the authors' loop.
        mapped = mapped.Select(m => m.Tensor.Destination == Destination.Plugin && ConditionIndex(m.Tensor.Target) is int k && k >= insertAfter.Length
            ? (m.Source, m.Tensor with { Destination = Destination.Drop, Rule = m.Tensor.Rule with { Why = $"condition layers past ehce_layers within {layers} layers, which the authors' loop never runs" } })
            : m).ToList();
        mapped.AddRange(LlavaImport.ClipMap.Map(vision).Select(t => (Source: vision, Tensor: t)));
        var live = mapped.Where(m => m.Tensor.Destination != Destination.Drop).ToList();
        using var job = new ImportJob(request, Layout, live.Count);
        foreach (var group in mapped.Where(m => m.Tensor.Destination == Destination.Drop).GroupBy(m => m.Tensor.Rule.Why))
            job.Notes.Add($"{group.Count()} tensor(s) not carried over ({group.First().Tensor.Source.Name}, ...): {group.Key}");

        job.WriteJson("base/config.json", baseConfig);
        job.CopyTokenizer(sourceFolder, "base");
        job.WriteTensors("base/model.safetensors", "base", live.Where(m => m.Tensor.Destination == Destination.Base));
        job.WriteJson("vision/config.json", HfConfigs.ClipVision(LlavaImport.ClipVisionConfig(visionFolder), null));
        string preprocessor = Path.Combine(visionFolder, VisionTowerFrontEnd.PreprocessorFileName);
        if (File.Exists(preprocessor)) job.CopyFile(preprocessor, "vision/" + VisionTowerFrontEnd.PreprocessorFileName);
        job.WriteTensors("vision/model.safetensors", "vision", live.Where(m => m.Tensor.Destination == Destination.Vision));

        var options = LlavaImport.FrontEndOptions(LlavaImport.Original, config, configPath, job.Notes);
        using var model = DecoderModel.Load(job.FolderOf("base"));
        using var tower = VisionTowerFrontEnd.Load(job.FolderOf("vision"), options);
        string? first = null;
        foreach (var (branch, task) in new[] { ("", "MM"), (Grounding, "G") })
        {
            var tensors = live.Where(m => m.Tensor.Destination == Destination.Plugin && m.Tensor.Rule.Branch == branch).ToList();
            if (tensors.Count == 0) continue;
            var record = new JsonObject();
            var parameters = job.PluginTensors(tensors, PartOf, record);
            string pluginName = branch.Length == 0 ? name : name + "-" + branch;
            var c = model.Config;
            var manifest = new PluginManifest
            {
                Design = InnerAdaptor.DesignName,
                HyperParameters = new JsonObject
                {
                    ["projector"] = Bridge.ProjectorKind,
                    ["vision_width"] = tower.FeatureWidth,
                    ["hidden_size"] = c.HiddenSize,
                    ["preset"] = InnerAdaptor.PresetLayers(InnerAdaptor.Iaa14, c.NumLayers).SequenceEqual(insertAfter) ? InnerAdaptor.Iaa14 : InnerAdaptor.CustomPreset,
                    ["insert_after"] = new JsonArray(insertAfter.Select(l => (JsonNode?)l).ToArray()),
                    ["own_embedding"] = true,
                    ["own_norm"] = true,
                    ["own_head"] = true,
                    ["tied_head"] = c.TieWordEmbeddings,
                    ["qkv_bias"] = c.QkvBias,
                    ["o_proj_bias"] = c.OutputBias,
                    ["mlp_bias"] = c.MlpBias,
                    ["image_placeholder"] = "<image>",
                    ["workflow"] = task,
                },
                Base = BaseDescription.Of(model),
                Vision = VisionDescription.Of(tower),
                Training = new JsonObject
                {
                    ["state"] = "imported",
                    ["layout"] = Layout,
                    ["source"] = Path.GetFullPath(request.Source),
                    ["authors_code"] = "360CVGroup/Inner-Adaptor-Architecture (iaa_llama.py, modeling_llama_iaa.py, iaa_arch.py)",
                    ["workflow"] = $"task_type {task}",
                    ["llm"] = "frozen by the authors: the base is the Llama they started from, unchanged; text runs it alone (their Text workflow)",
                    ["tensors"] = record,
                },
            };
            job.Record(pluginName + ".graft/plugin.safetensors", record.DeepClone());
            job.WritePlugin(pluginName, manifest, parameters, model, tower);
            first ??= pluginName + ".graft";
        }
        if (first is null) throw new ImportException(sourceFolder, "holds no condition layers: not an IAA checkpoint");
        job.Notes.Add("the grounding workflow (task_type G) is its own plug-in, NAME-grounding.graft, on the same base");
        return job.Commit("base", "vision", first, baseChanged: false);
    }

    private static int? ConditionIndex(string target) =>
        target.StartsWith("model.condition_layers.", StringComparison.Ordinal) && int.TryParse(target.Split('.')[2], out int k) ? k : null;

    private static string PartOf(string target) =>
        target.StartsWith("mm_projector.", StringComparison.Ordinal) ? InnerAdaptor.ProjectorPart
            : target.StartsWith("model.condition_layers.", StringComparison.Ordinal) ? InnerAdaptor.InnerLayersPart
            : InnerAdaptor.HeadPart;
}
