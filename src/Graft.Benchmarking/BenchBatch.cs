using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Benchmarking;

/// <summary>
/// `graft bench batch`: batched decoding of a Qwen2-0.5B-shaped decoder with random weights, f32 and bf16. B sequences
/// decode together (one step appends one token to each, the weights read once for all B), and the tokens/s of B = 1, 2,
/// 4, 8, 16 show what batching gains; every sequence's logits are the ones it gets decoded alone.
/// </summary>
internal static class BatchBench
{
    static readonly int[] BatchSizes = [1, 2, 4, 8, 16];
    const int PromptTokens = 16;
    const int WarmupSteps = 2;
    const int TimedSteps = 10;

    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per line per measurement instead of a table." };
        var layers = new Option<int>("--layers") { Description = "Decoder layers (Qwen2-0.5B has 24); fewer for a quicker run.", DefaultValueFactory = _ => 24 };
        var command = new Command("batch",
            $"Batched decode steps of a Qwen2-0.5B-shaped model with random weights, f32 and bf16: tokens/s for B = {string.Join(", ", BatchSizes)} sequences at once.");
        command.Options.Add(json);
        command.Options.Add(layers);
        command.SetAction(parseResult => Run(parseResult.GetValue(json), parseResult.GetValue(layers)));
        return command;
    }

    static int Run(bool json, int layers)
    {
        if (layers <= 0)
        {
            Console.Error.WriteLine($"--layers must be positive, got {layers}");
            return 2;
        }
        if (!json) Console.WriteLine(MachineInfo.Line());
        else Console.WriteLine(MachineInfo.Describe().ToJsonString());
        var config = DecodeBench.Qwen2HalfBillion(layers);
        var rows = new List<JsonObject>();
        foreach (var dtype in new[] { DType.F32, DType.BF16 })
        {
            using (var model = DecoderModel.FromWeights(config, RandomWeights.Build(config, dtype, seed: 1)))
            {
                double single = 0;
                foreach (int batch in BatchSizes)
                {
                    double tokensPerSecond = Measure(model, batch);
                    if (batch == 1) single = tokensPerSecond;
                    var row = new JsonObject
                    {
                        ["model"] = $"qwen2-0.5b-shape-{config.NumLayers}L",
                        ["dtype"] = dtype == DType.F32 ? "f32" : "bf16",
                        ["batch"] = batch,
                        ["tokens_per_s"] = Math.Round(tokensPerSecond, 3),
                        ["gain_over_b1"] = Math.Round(tokensPerSecond / single, 3),
                    };
                    rows.Add(row);
                    if (json) Console.WriteLine(row.ToJsonString());
                }
            }
            // The f32 model (2 GB at full depth) is dropped before the bf16 one is built.
            GC.Collect();
        }
        if (!json) PrintTable(config, rows);
        return 0;
    }

    /// <summary>Tokens/s of B sequences stepping together: B over the median step time, after each prefilled a short prompt of its own.</summary>
    static double Measure(DecoderModel model, int batch)
    {
        var config = model.Config;
        var random = new Random(batch);
        var caches = new KvCache[batch];
        var next = new int[batch];
        for (int b = 0; b < batch; b++)
        {
            caches[b] = new KvCache(config, PromptTokens + WarmupSteps + TimedSteps);
            var prompt = new int[PromptTokens];
            for (int i = 0; i < prompt.Length; i++) prompt[i] = random.Next(config.VocabSize);
            next[b] = ArgMax(model.Forward(prompt, caches[b], lastPositionOnly: true).Span);
        }
        var steps = new double[TimedSteps];
        var watch = new Stopwatch();
        for (int step = 0; step < WarmupSteps + TimedSteps; step++)
        {
            watch.Restart();
            var logits = model.DecodeStep(caches.Select((cache, b) => new DecodeRow(next[b], cache)).ToArray());
            for (int b = 0; b < batch; b++) next[b] = ArgMax(logits.Span.Slice(b * config.VocabSize, config.VocabSize));
            if (step >= WarmupSteps) steps[step - WarmupSteps] = watch.Elapsed.TotalSeconds;
        }
        Array.Sort(steps);
        return batch / steps[steps.Length / 2];
    }

    static int ArgMax(ReadOnlySpan<float> values) => System.Numerics.Tensors.TensorPrimitives.IndexOfMax(values);

    static void PrintTable(LlmConfig config, List<JsonObject> rows)
    {
        Console.WriteLine($"graft bench batch: Qwen2-0.5B shape, {config.NumLayers} layers, random weights, {Environment.ProcessorCount} threads");
        Console.WriteLine($"Each of B sequences prefills {PromptTokens} tokens of its own; then the median of {TimedSteps} batched steps (after {WarmupSteps} warm-up steps),"
            + " each appending one token to every sequence. tokens/s = B / step time.");
        Console.WriteLine();
        string[] header = ["dtype", "B", "tokens/s", "gain over B=1"];
        var cells = rows.Select(r => new[]
        {
            (string)r["dtype"]!, r["batch"]!.GetValue<int>().ToString(CultureInfo.InvariantCulture),
            r["tokens_per_s"]!.GetValue<double>().ToString("F2", CultureInfo.InvariantCulture),
            r["gain_over_b1"]!.GetValue<double>().ToString("F2", CultureInfo.InvariantCulture),
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, cells.Max(c => c[i].Length))).ToArray();
        Console.WriteLine(string.Join("  ", header.Select((h, i) => i == 0 ? h.PadRight(widths[i]) : h.PadLeft(widths[i]))));
        foreach (var c in cells)
            Console.WriteLine(string.Join("  ", c.Select((v, i) => i == 0 ? v.PadRight(widths[i]) : v.PadLeft(widths[i]))));
    }
}
