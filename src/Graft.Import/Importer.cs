using System.Text.Json.Nodes;

namespace Graft.Import;

/// <summary>
/// <c>graft import</c>: a design's published checkpoint, in its authors' layout, as the base + vision tower + plug-in
/// Graft runs. The layout is detected from the files (or named); each layout is a table from the authors' tensor names
/// to Graft's (<see cref="TensorMap"/>) plus the configuration its authors' code reads.
/// </summary>
public static class Importer
{
    /// <summary>The layouts this build imports, with what each is.</summary>
    public static IReadOnlyList<(string Name, string Description)> Layouts { get; } =
    [
        (LlavaImport.Original, "LLaVA-1.5 as its authors released it (LlavaLlamaForCausalLM: liuhaotian/llava-v1.5-7b, -13b); needs --vision (openai/clip-vit-large-patch14-336)"),
        (LlavaImport.HuggingFace, "LLaVA-1.5 converted by llava-hf (LlavaForConditionalGeneration: llava-hf/llava-1.5-7b-hf, -13b-hf), either key layout"),
        (LlavaImport.Pretrain, "LLaVA-1.5's stage-1 projector (mm_projector.bin) over the Vicuna it was trained on; needs --base and --vision"),
        (IaaImport.Layout, "IAA (IAALlamaForCausalLM: qihoo360/Inner-Adaptor-Architecture): the frozen Llama 3 and two InnerAdaptor plug-ins (MM, grounding); needs --vision"),
    ];

    public static ImportResult Import(ImportRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!File.Exists(request.Source) && !Directory.Exists(request.Source))
            throw new FileNotFoundException($"'{request.Source}' does not exist", request.Source);
        string layout = request.Format ?? Detect(request.Source);
        return layout switch
        {
            LlavaImport.Original or LlavaImport.HuggingFace or LlavaImport.Pretrain => LlavaImport.Import(request, layout),
            IaaImport.Layout => IaaImport.Import(request),
            _ => throw new ArgumentException($"--format: '{layout}' is not a layout this build imports ({string.Join(", ", Layouts.Select(l => l.Name))})"),
        };
    }

    /// <summary>The layout of a checkpoint, from its config.json's architecture and its files.</summary>
    public static string Detect(string source)
    {
        string folder = Directory.Exists(source) ? source : Path.GetDirectoryName(Path.GetFullPath(source))!;
        if (File.Exists(source) && Path.GetFileName(source) == "mm_projector.bin") return LlavaImport.Pretrain;
        string configPath = Path.Combine(folder, "config.json");
        if (!File.Exists(configPath))
            throw new ImportException(folder, "has no config.json to tell its layout from; name the layout with --format (" + string.Join(", ", Layouts.Select(l => l.Name)) + ")");
        var config = HfConfigs.Read(configPath);
        string? architecture = config["architectures"] is JsonArray { Count: > 0 } list && list[0] is JsonValue v && v.TryGetValue(out string? a) ? a : null;
        return architecture switch
        {
            "LlavaForConditionalGeneration" => LlavaImport.HuggingFace,
            "LlavaLlamaForCausalLM" when File.Exists(Path.Combine(folder, "mm_projector.bin")) && !TensorSource.HasWeights(folder) => LlavaImport.Pretrain,
            "LlavaLlamaForCausalLM" when File.Exists(Path.Combine(folder, "mm_projector.bin")) && TensorSource.HasWeights(folder) && OnlyProjector(folder) => LlavaImport.Pretrain,
            "LlavaLlamaForCausalLM" => LlavaImport.Original,
            "IAALlamaForCausalLM" => IaaImport.Layout,
            null => throw new ImportException(configPath, "names no architecture; name the layout with --format", "architectures"),
            _ => throw new ImportException(configPath, $"'{architecture}' is not a layout this build imports ({string.Join(", ", Layouts.Select(l => l.Name))})", "architectures"),
        };
    }

    private static bool OnlyProjector(string folder)
    {
        using var source = TensorSource.Open(folder);
        return source.Tensors.All(t => t.Name.StartsWith("model.mm_projector.", StringComparison.Ordinal));
    }
}
