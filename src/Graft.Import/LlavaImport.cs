using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Models.Vision;
using Graft.Plugins;

namespace Graft.Import;

/// <summary>
/// LLaVA-1.5 (haotian-liu/LLaVA) as a base + <see cref="Bridge"/> plug-in, from each of its releases:
/// <list type="bullet">
/// <item><c>llava</c>: the authors' LlavaLlamaForCausalLM folder (liuhaotian/llava-v1.5-7b): the LLM they fine-tuned in
/// stage 2 (written as its own base), <c>model.mm_projector.{0,2}</c>, and the CLIP tower their code loads by its
/// mm_vision_tower name (given as <c>--vision</c>; the copy of it some checkpoints hold is not what their code runs).</item>
/// <item><c>llava-hf</c>: llava-hf's LlavaForConditionalGeneration, in the key layout of transformers before 4.52
/// (language_model.model.*, language_model.lm_head, vision_tower.*, multi_modal_projector.linear_{1,2}) and after
/// (model.language_model.*, model.vision_tower.*, model.multi_modal_projector.*, lm_head).</item>
/// <item><c>llava-pretrain</c>: stage 1's mm_projector.bin (the projector alone) over the Vicuna it was trained on
/// (<c>--base</c>), which stays as it was: a true plug-in.</item>
/// </list>
/// The authors' code (llava_arch.py, clip_encoder.py) fixes what Graft's Bridge must do: features of hidden_states
/// [mm_vision_select_layer] with the class token dropped for 'patch', mlp2x_gelu, images padded to a square of the mean
/// colour when image_aspect_ratio is 'pad' (process_images), each image's rows where IMAGE_TOKEN_INDEX stands, and the
/// vicuna_v1 conversation.
/// </summary>
internal static class LlavaImport
{
    public const string Original = "llava";
    public const string HuggingFace = "llava-hf";
    public const string Pretrain = "llava-pretrain";

    internal const string LlamaNames = @"model\.(?:embed_tokens\.weight|norm\.weight|layers\.\d+\.(?:self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)\.(?:weight|bias)|layers\.\d+\.(?:input|post_attention)_layernorm\.weight)|lm_head\.weight";
    internal const string RotaryBuffer = @"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq";
    internal const string RotaryWhy = "a buffer transformers 4.31 saved; recomputed from rope_theta";

    /// <summary>LLaVA's own checkpoint: the LLM under Llama's names, the projector, and the tower copy their code does not load.</summary>
    public static readonly TensorMap OriginalMap = new(Original,
    [
        new(@"model\.mm_projector\.(0|2)\.(weight|bias)", Destination.Plugin, "mm_projector.$1.$2"),
        new(LlamaNames, Destination.Base, "$0"),
        new(RotaryBuffer, Destination.Drop, "", RotaryWhy),
        new(@"model\.vision_tower\.vision_tower\..*", Destination.Drop, "",
            "LLaVA's builder loads the tower from mm_vision_tower (the frozen openai CLIP), not from this copy"),
    ]);

    /// <summary>llava-hf's LlavaForConditionalGeneration in both key layouts transformers writes.</summary>
    public static readonly TensorMap HuggingFaceMap = new(HuggingFace,
    [
        new(@"(?:model\.)?multi_modal_projector\.linear_1\.(weight|bias)", Destination.Plugin, "mm_projector.0.$1"),
        new(@"(?:model\.)?multi_modal_projector\.linear_2\.(weight|bias)", Destination.Plugin, "mm_projector.2.$1"),
        new(@"language_model\.(model\..*)", Destination.Base, "$1"),
        new(@"language_model\.lm_head\.weight|lm_head\.weight", Destination.Base, "lm_head.weight"),
        new(@"model\.language_model\.(.*)", Destination.Base, "model.$1"),
        new(@"(?:model\.)?vision_tower\.(vision_model\..*)", Destination.Vision, "$1"),
    ]);

    /// <summary>Stage 1's projector file.</summary>
    public static readonly TensorMap PretrainMap = new(Pretrain, [new(@"model\.mm_projector\.(0|2)\.(weight|bias)", Destination.Plugin, "mm_projector.$1.$2")]);

    /// <summary>A Llama folder (the Vicuna base).</summary>
    public static readonly TensorMap LlamaMap = new("llama", [new(LlamaNames, Destination.Base, "$0"), new(RotaryBuffer, Destination.Drop, "", RotaryWhy)]);

    /// <summary>A CLIP folder (openai's CLIPModel or a CLIPVisionModel): the vision half.</summary>
    public static readonly TensorMap ClipMap = new("clip",
    [
        new(@"vision_model\.embeddings\.position_ids", Destination.Drop, "", "an index buffer"),
        new(@"vision_model\..*", Destination.Vision, "$0"),
        new(@"text_model\..*|text_projection\.weight|visual_projection\.weight|logit_scale", Destination.Drop, "", "CLIP's text half and projections, which LLaVA does not use"),
    ]);

    public static ImportResult Import(ImportRequest request, string layout)
    {
        string sourceFolder = Directory.Exists(request.Source) ? request.Source : Path.GetDirectoryName(Path.GetFullPath(request.Source))!;
        string name = request.Name ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(sourceFolder)));
        var config = HfConfigs.Read(Path.Combine(sourceFolder, "config.json"));
        string configPath = Path.Combine(sourceFolder, "config.json");

        TensorSource? baseSource = null, visionSource = null;
        using var source = layout == Pretrain ? TensorSource.Open(ProjectorFile(request.Source)) : TensorSource.Open(request.Source);
        try
        {
            string? visionFolder = layout == HuggingFace ? null : request.Vision
                ?? throw new ArgumentException($"--vision: LLaVA's code loads its CLIP tower by name (mm_vision_tower = {HfConfigs.String(config, "mm_vision_tower") ?? "?"}); download that folder and give it with --vision");
            if (layout == Pretrain)
                baseSource = TensorSource.Open(request.Base ?? throw new ArgumentException("--base: mm_projector.bin is LLaVA's stage-1 projector alone; give the Vicuna folder it was trained on with --base"));
            else if (request.Base is not null)
                throw new ArgumentException($"--base: a {layout} checkpoint holds its own language model; leave --base out");
            if (visionFolder is not null) visionSource = TensorSource.Open(visionFolder);

            var mapped = (layout switch { Original => OriginalMap, HuggingFace => HuggingFaceMap, _ => PretrainMap }).Map(source).Select(t => (Source: source, Tensor: t)).ToList();
            if (baseSource is not null) mapped.AddRange(LlamaMap.Map(baseSource).Select(t => (Source: baseSource, Tensor: t)));
            if (visionSource is not null) mapped.AddRange(ClipMap.Map(visionSource).Select(t => (Source: visionSource, Tensor: t)));
            var live = mapped.Where(m => m.Tensor.Destination != Destination.Drop).ToList();
            using var job = new ImportJob(request, layout, live.Count);
            foreach (var group in mapped.Where(m => m.Tensor.Destination == Destination.Drop).GroupBy(m => m.Tensor.Rule.Why))
                job.Notes.Add($"{group.Count()} tensor(s) not carried over ({group.First().Tensor.Source.Name}, ...): {group.Key}");

            // The base: the authors' LLM (fine-tuned in stage 2, so its own base), or the Vicuna they froze.
            JsonObject llm = layout switch
            {
                HuggingFace => config["text_config"] as JsonObject ?? throw new ImportException(configPath, "is missing", "text_config"),
                Pretrain => HfConfigs.Read(Path.Combine(request.Base!, "config.json")),
                _ => config,
            };
            var baseConfig = HfConfigs.LlamaBase(llm, configPath, HfConfigs.String(layout == HuggingFace ? config : llm, "torch_dtype"));
            job.WriteJson("base/config.json", baseConfig);
            job.CopyTokenizer(layout == Pretrain ? request.Base! : sourceFolder, "base");
            if (!File.Exists(job.PathOf("base/tokenizer.json")) && File.Exists(job.PathOf("base/tokenizer.model")))
                job.Notes.Add(TokenizerNote(job.PathOf("base/tokenizer.model"), job.PathOf("base/tokenizer.json")));
            job.WriteTensors("base/model.safetensors", "base", live.Where(m => m.Tensor.Destination == Destination.Base));

            // The tower: a CLIPVisionModel folder.
            var visionConfig = layout == HuggingFace
                ? config["vision_config"] as JsonObject ?? throw new ImportException(configPath, "is missing", "vision_config")
                : ClipVisionConfig(visionFolder!);
            job.WriteJson("vision/config.json", HfConfigs.ClipVision(visionConfig, null));
            string preprocessor = Path.Combine(layout == HuggingFace ? sourceFolder : visionFolder!, VisionTowerFrontEnd.PreprocessorFileName);
            if (File.Exists(preprocessor)) job.CopyFile(preprocessor, "vision/" + VisionTowerFrontEnd.PreprocessorFileName);
            job.WriteTensors("vision/model.safetensors", "vision", live.Where(m => m.Tensor.Destination == Destination.Vision));

            // The plug-in: LLaVA's projector as a Bridge, with the authors' feature selection and padding.
            var options = FrontEndOptions(layout, config, configPath, job.Notes);
            using var model = DecoderModel.Load(job.FolderOf("base"));
            using var vision = VisionTowerFrontEnd.Load(job.FolderOf("vision"), options);
            var record = new JsonObject();
            var parameters = job.PluginTensors(live.Where(m => m.Tensor.Destination == Destination.Plugin), _ => Bridge.ProjectorPart, record);
            bool tuned = layout != Pretrain;
            string projectorKind = HfConfigs.String(config, "mm_projector_type") ?? (layout == HuggingFace ? "mlp2x_gelu" : "linear");
            if (projectorKind != Bridge.ProjectorKind || layout == HuggingFace && HfConfigs.String(config, "projector_hidden_act") is { } act && act != "gelu")
                throw new ImportException(configPath, $"the projector is '{projectorKind}' ({HfConfigs.String(config, "projector_hidden_act") ?? "gelu"}); Bridge runs LLaVA-1.5's mlp2x_gelu", "mm_projector_type");
            var manifest = new PluginManifest
            {
                Design = Bridge.DesignName,
                HyperParameters = new JsonObject
                {
                    ["projector"] = Bridge.ProjectorKind,
                    ["tune"] = tuned ? "full" : "projector",
                    ["vision_width"] = vision.FeatureWidth,
                    ["hidden_size"] = model.Config.HiddenSize,
                    ["image_placeholder"] = "<image>",
                    ["conversation"] = "vicuna_v1",
                },
                Base = BaseDescription.Of(model),
                Vision = VisionDescription.Of(vision),
                Training = new JsonObject
                {
                    ["state"] = "imported",
                    ["layout"] = layout,
                    ["source"] = Path.GetFullPath(request.Source),
                    ["authors_code"] = "haotian-liu/LLaVA (llava_arch.py, clip_encoder.py, multimodal_projector/builder.py, mm_utils.py)",
                    ["llm"] = tuned
                        ? "fine-tuned by the authors (LLaVA-1.5 stage 2): their LLM is written as its own base"
                        : "frozen by the authors (stage 1): the base is their Vicuna, unchanged",
                    ["conversation"] = "vicuna_v1 (FastChat's Vicuna v1.1: graft chat --template vicuna)",
                    ["tensors"] = record,
                },
            };
            job.Record(name + ".graft/plugin.safetensors", record.DeepClone());
            if (tuned) job.Notes.Add("the authors fine-tuned the LLM (LLaVA-1.5 stage 2), so base/ is their LLM, not Vicuna: text through it is theirs, not the original base's");
            job.WritePlugin(name, manifest, parameters, model, vision);
            return job.Commit("base", "vision", name + ".graft", tuned);
        }
        finally
        {
            baseSource?.Dispose();
            visionSource?.Dispose();
        }
    }

    /// <summary>The file of a projector-only release: the path given, or mm_projector.bin in the folder given.</summary>
    private static string ProjectorFile(string source) =>
        File.Exists(source) ? source
            : File.Exists(Path.Combine(source, "mm_projector.bin")) ? Path.Combine(source, "mm_projector.bin")
            : throw new FileNotFoundException($"'{source}' holds no mm_projector.bin", Path.Combine(source, "mm_projector.bin"));

    internal static JsonObject ClipVisionConfig(string folder)
    {
        string path = Path.Combine(folder, "config.json");
        var config = HfConfigs.Read(path);
        return HfConfigs.String(config, "model_type") switch
        {
            "clip" => config["vision_config"] as JsonObject ?? throw new ImportException(path, "is missing", "vision_config"),
            "clip_vision_model" => config,
            var other => throw new ImportException(path, $"'{other}' is not a CLIP model (LLaVA-1.5's tower is openai/clip-vit-large-patch14-336)", "model_type"),
        };
    }

    /// <summary>The authors' feature selection and padding, from the release's config.</summary>
    internal static VisionTowerOptions FrontEndOptions(string layout, JsonObject config, string path, List<string> notes)
    {
        if (layout == HuggingFace)
        {
            int layer = HfConfigs.Int(config, "vision_feature_layer") ?? -2;
            string strategy = HfConfigs.String(config, "vision_feature_select_strategy") ?? "default";
            if (strategy is not ("default" or "full")) throw new ImportException(path, $"'{strategy}' is not default or full", "vision_feature_select_strategy");
            notes.Add("images are padded to a square of the mean colour, as the authors' process_images does for LLaVA-1.5 (image_aspect_ratio 'pad'); llava-hf's own processor crops instead");
            return new VisionTowerOptions { Features = VisionFeatureSelector.Layer(layer, keepClassToken: strategy == "full"), PadToSquare = true };
        }
        int select = HfConfigs.Int(config, "mm_vision_select_layer") ?? -2;
        string feature = HfConfigs.String(config, "mm_vision_select_feature") ?? "patch";
        if (feature is not ("patch" or "cls_patch")) throw new ImportException(path, $"'{feature}' is not patch or cls_patch", "mm_vision_select_feature");
        string aspect = HfConfigs.String(config, "image_aspect_ratio") ?? "square";
        if (aspect is not ("pad" or "square"))
            throw new ImportException(path, $"'{aspect}' is not supported (pad, as LLaVA-1.5; anyres is LLaVA-NeXT's)", "image_aspect_ratio");
        if (HfConfigs.String(config, "mm_patch_merge_type") is { } merge && merge != "flat")
            throw new ImportException(path, $"'{merge}' is LLaVA-NeXT's; LLaVA-1.5 is flat", "mm_patch_merge_type");
        if (config["mm_use_im_start_end"] is JsonValue startEnd && startEnd.TryGetValue(out bool useStartEnd) && useStartEnd)
            throw new ImportException(path, "image start/end tokens are not part of LLaVA-1.5", "mm_use_im_start_end");
        return new VisionTowerOptions { Features = VisionFeatureSelector.Layer(select, keepClassToken: feature == "cls_patch"), PadToSquare = aspect == "pad" };
    }

    /// <summary>Writes tokenizer.json from a SentencePiece tokenizer.model, as transformers' LlamaConverter does.</summary>
    internal static string TokenizerNote(string model, string json)
    {
        var converted = Graft.Models.Tokenization.SentencePieceConverter.ToTokenizerJson(File.ReadAllBytes(model), model);
        File.WriteAllText(json, converted);
        return "tokenizer.json was written from tokenizer.model (SentencePiece BPE with byte fallback, as transformers' LlamaConverter converts it)";
    }
}
