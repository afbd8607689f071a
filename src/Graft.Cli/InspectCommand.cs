using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Graft.Models.Llm;
using Graft.Models.Vision;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Cli;

/// <summary>
/// `graft inspect DIR`: what a folder holds and what running it takes: a Hugging Face LLM checkpoint (architecture,
/// parameters, dtypes, memory), a CLIP or SigLIP vision tower (image and patch size, tokens per image, preprocessing,
/// parameters) or a plug-in (as `graft plugin inspect`). Headers only: no weights are read.
/// </summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var folder = new Argument<string>("DIR") { Description = "A Hugging Face LLM or CLIP/SigLIP folder (config.json + safetensors), or a plug-in folder (NAME.graft)" };
        var command = new Command("inspect", "Print what a model, vision tower or plug-in folder holds: architecture, parameters, dtypes, memory needed");
        command.Arguments.Add(folder);
        command.SetAction(parseResult =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            var error = parseResult.InvocationConfiguration.Error;
            return Guarded(error, () => Run(parseResult.GetValue(folder)!, output));
        });
        return command;
    }

    public static int Run(string folder, TextWriter output)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"'{folder}' does not exist");
        if (File.Exists(Path.Combine(folder, PluginManifest.FileName))) return PluginCommand.RunInspect(folder, output);
        if (IsVisionTower(folder)) return RunVision(folder, output);
        var summary = DecoderModel.Inspect(folder);
        var c = summary.Config;
        output.WriteLine($"architecture: {c.Architecture} ({c.Family})");
        output.WriteLine($"layers: {c.NumLayers}, hidden: {c.HiddenSize}, intermediate: {c.IntermediateSize}, vocab: {c.VocabSize}");
        output.WriteLine($"heads: {c.NumHeads} query, {c.NumKeyValueHeads} key/value, head size {c.HeadDim}");
        output.WriteLine($"rope: theta {c.RopeTheta}, scaling {c.RopeScaling.Kind}{(c.RopeScaling.Kind == RopeScalingKind.None ? "" : $" (factor {c.RopeScaling.Factor})")}, max positions {c.MaxPositionEmbeddings}");
        output.WriteLine($"tied embeddings: {(c.TieWordEmbeddings ? "yes" : "no")}, qkv bias: {(c.QkvBias ? "yes" : "no")}");
        output.WriteLine($"parameters: {summary.ParameterCount:N0}");
        foreach (var (dtype, count) in summary.ParametersByDType.OrderBy(p => p.Key))
            output.WriteLine($"  {dtype.SafeTensorsName()}: {count:N0}");
        long kvPerToken = summary.KvCacheBytesPerToken;
        output.WriteLine($"memory: weights {Bytes(summary.WeightBytes)}, KV cache {Bytes(kvPerToken)} per token ({Bytes(kvPerToken * c.MaxPositionEmbeddings)} at {c.MaxPositionEmbeddings} positions)");
        return 0;
    }

    /// <summary>A CLIP or SigLIP tower: what an image becomes, the preprocessing, the parameters and memory.</summary>
    public static int RunVision(string folder, TextWriter output)
    {
        var kind = VisionTowerConfig.DetectKind(folder);
        var c = VisionTowerConfig.Read(folder, kind);
        var p = Graft.Plugins.VisionTowerFrontEnd.PreprocessorFor(c, folder);
        using var tower = VisionEncoder.Load(folder);
        var inv = CultureInfo.InvariantCulture;
        output.WriteLine($"architecture: {(kind == VisionTowerKind.Clip ? "CLIP" : "SigLIP")} vision tower");
        output.WriteLine($"image: {c.ImageSize}x{c.ImageSize} px, patch {c.PatchSize} ({c.GridSize}x{c.GridSize} = {c.Patches} patches), class token: {(tower.HasClassToken ? "yes" : "no")}");
        output.WriteLine($"layers: {c.Layers}, width: {c.Width}, intermediate: {c.IntermediateSize}, heads: {c.Heads}, activation: {c.Activation}");
        output.WriteLine($"features per image: {c.Patches + (tower.HasClassToken ? 1 : 0)} tokens x {c.Width} per hidden state ({c.Layers + 1} hidden states; LLaVA reads layer -2 without the class token: {c.Patches} tokens)");
        string resize = !p.DoResize ? "no resize" : p.ShortestEdge is int edge ? $"resize shortest edge to {edge}" : $"resize to {p.ResizeHeight}x{p.ResizeWidth}";
        string crop = p.DoCenterCrop ? $", centre crop {p.CropHeight}x{p.CropWidth}" : "";
        string Numbers(IReadOnlyList<double> values) => string.Join(" ", values.Select(v => v.ToString("0.####", inv)));
        output.WriteLine($"preprocessing ({(File.Exists(Path.Combine(folder, Graft.Plugins.VisionTowerFrontEnd.PreprocessorFileName)) ? Graft.Plugins.VisionTowerFrontEnd.PreprocessorFileName : "the family's defaults")}): {resize} ({p.Resample}){crop}, mean {Numbers(p.ImageMean)}, std {Numbers(p.ImageStd)}");
        long parameters = tower.Parameters.Sum(t => (long)t.Length);
        output.WriteLine($"parameters: {parameters:N0}");
        foreach (var group in tower.Parameters.GroupBy(t => t.DType).OrderBy(g => g.Key))
            output.WriteLine($"  {group.Key.SafeTensorsName()}: {group.Sum(t => (long)t.Length):N0}");
        output.WriteLine($"memory: weights {Bytes(tower.Parameters.Sum(t => (long)t.Length * t.DType.SizeOf()))}");
        return 0;
    }

    /// <summary>Whether the folder's config.json describes a CLIP or SigLIP model (its model_type).</summary>
    private static bool IsVisionTower(string folder)
    {
        string path = Path.Combine(folder, "config.json");
        if (!File.Exists(path)) return false;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            return document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("model_type", out var type) && type.ValueKind == JsonValueKind.String
                && type.GetString() is "clip" or "clip_vision_model" or "siglip" or "siglip_vision_model";
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>Bad input becomes one line on stderr and exit code 1 instead of a stack trace.</summary>
    internal static int Guarded(TextWriter error, Func<int> run)
    {
        try
        {
            return run();
        }
        catch (Exception e) when (e is LlmConfigException or SafeTensorsException or IOException or ArgumentException or UnauthorizedAccessException
                                      or VisionModelException or PluginFormatException or FormatException)
        {
            error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }

    private static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => $"{bytes / (double)(1L << 30):F2} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):F2} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:F1} KiB",
        _ => $"{bytes} B",
    };
}
