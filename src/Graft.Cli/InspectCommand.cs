using System.CommandLine;
using Graft.Models.Llm;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Cli;

/// <summary>`graft inspect DIR`: what a Hugging Face checkpoint folder holds and what running it takes.</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var folder = new Argument<string>("DIR") { Description = "A Hugging Face model folder (config.json + safetensors)" };
        var command = new Command("inspect", "Print a checkpoint's architecture, parameter count, dtypes and memory needed");
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

    /// <summary>Bad input becomes one line on stderr and exit code 1 instead of a stack trace.</summary>
    internal static int Guarded(TextWriter error, Func<int> run)
    {
        try
        {
            return run();
        }
        catch (Exception e) when (e is LlmConfigException or SafeTensorsException or IOException or ArgumentException or UnauthorizedAccessException)
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
