using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.Optim;
using Graft.Training;

namespace Graft.Benchmarking;

/// <summary>
/// `graft bench train`: tokens/s of one plug-in training step, a Bridge (LLaVA projector): the forward of a batch of
/// multimodal sequences through a frozen decoder, the backward through all of it down to the projector, and AdamW on
/// the projector, exactly as the trainer runs it (<see cref="TrainingStep"/>). Two bases with random weights built in
/// memory: a small one (the demo's scale) and a Qwen2-0.5B shape; f32 and bf16 base weights, each against the same
/// step in libtorch (graft-peers torch-train) measured alternately with ours in the same run.
/// </summary>
internal static class TrainBench
{
    internal const int LeadTokens = 16, ImageTokens = 64, ContextTokens = 144, AnswerTokens = 32;
    internal const int SequenceLength = LeadTokens + ImageTokens + ContextTokens + AnswerTokens;
    internal const int ProjectorSeed = 3;

    /// <summary>A base to time: its shape, the vision width the projector reads, sequences per step, and warm-up and timed steps.</summary>
    internal sealed record Case(string Key, string Name, LlmConfig Config, int VisionWidth, int Batch, int WarmupSteps, int Steps);

    /// <summary>The demo's scale: a Qwen2-style decoder of width 128, 4 layers, 2,048 tokens.</summary>
    internal static LlmConfig Small() => DecodeBench.Qwen2HalfBillion(4) with
    {
        VocabSize = 2048, HiddenSize = 128, IntermediateSize = 384, NumHeads = 4, NumKeyValueHeads = 2, HeadDim = 32, MaxPositionEmbeddings = 512,
    };

    internal static Case[] Cases(int layers) =>
    [
        new("small", "small (d 128, 4 layers, vocab 2048)", Small(), VisionWidth: 128, Batch: 8, WarmupSteps: 2, Steps: 7),
        new("qwen2-0.5b", $"qwen2-0.5b shape ({layers} layers)", DecodeBench.Qwen2HalfBillion(layers), VisionWidth: 1024, Batch: 1, WarmupSteps: 1, Steps: 3),
    ];

    public static Command Create() => BenchCommand.QwenShapedCommand("train",
        $"One Bridge training step (forward + backward + AdamW) on a small and a Qwen2-0.5B-shaped base, {SequenceLength}-token multimodal sequences, vs libtorch.", Run);

    sealed record Side(List<double> StepSeconds, double FirstLoss);

    static int Run(BenchOptions options)
    {
        if (options.Json) Console.WriteLine(MachineInfo.Describe().ToJsonString());
        else
        {
            Console.WriteLine($"graft bench train: one Bridge (LLaVA projector) training step, {Environment.ProcessorCount} threads, random weights");
            Console.WriteLine(MachineInfo.Line());
            Console.WriteLine($"A step: forward of the batch ({SequenceLength}-token sequences: {LeadTokens} text, {ImageTokens} image rows from the projector, "
                + $"{ContextTokens} text, {AnswerTokens} answer tokens), cross-entropy on the answer tokens (head on those positions only),");
            Console.WriteLine("backward through the frozen decoder to the projector, AdamW on the projector. Peer: the same step in libtorch (graft-peers torch-train),");
            Console.WriteLine($"the batch as one [B, T] tensor; {options.Rounds} round(s) of peer then ours; tok/s from each side's fastest step, the ratio's range over rounds.");
            Console.WriteLine();
        }
        var rows = new List<JsonObject>();
        string? peerName = null, peerProblem = options.NoPeer ? "peer skipped (--no-peer)" : null;
        foreach (var c in Cases(options.Layers))
        {
            foreach (var dtype in new[] { DType.F32, DType.BF16 })
            {
                var ours = new List<Side>();
                var peers = new List<Side>();
                for (int round = 0; round < options.Rounds; round++)
                {
                    // The peer runs first and exits, so its weights and ours are never resident together.
                    if (!options.NoPeer && (round == 0 || peers.Count > 0))
                    {
                        var peer = RunPeer(c, dtype, options.Layers, out var problem, out var name);
                        if (peer is not null) { peers.Add(peer); peerName = name; }
                        else peerProblem = problem;
                    }
                    ours.Add(Measure(c, dtype));
                    GC.Collect();
                }
                var row = Row(c, dtype, ours, peers, peerName ?? peerProblem);
                rows.Add(row);
                if (options.Json) Console.WriteLine(row.ToJsonString());
            }
        }
        if (!options.Json) PrintTable(rows, peerName, peerProblem);
        return 0;
    }

    static JsonObject Row(Case c, DType dtype, List<Side> ours, List<Side> peers, string? peer)
    {
        double tokens = c.Batch * SequenceLength;
        double oursBest = tokens / ours.SelectMany(s => s.StepSeconds).Min();
        double? peerBest = peers.Count == 0 ? null : tokens / peers.SelectMany(s => s.StepSeconds).Min();
        var roundRatios = peers.Count == 0 ? [] : ours.Zip(peers, (o, p) => p.StepSeconds.Min() / o.StepSeconds.Min()).ToArray();
        return new JsonObject
        {
            ["base"] = c.Name,
            ["dtype"] = dtype == DType.F32 ? "f32" : "bf16",
            ["design"] = "bridge",
            ["sequences_per_step"] = c.Batch,
            ["tokens_per_sequence"] = SequenceLength,
            ["ours_step_s"] = Math.Round(tokens / oursBest, 4),
            ["ours_tokens_per_s"] = Math.Round(oursBest, 1),
            ["peer_tokens_per_s"] = peerBest is null ? null : Math.Round(peerBest.Value, 1),
            ["ratio"] = peerBest is null ? null : Math.Round(oursBest / peerBest.Value, 3),
            ["ratio_min"] = roundRatios.Length == 0 ? null : Math.Round(roundRatios.Min(), 3),
            ["ratio_max"] = roundRatios.Length == 0 ? null : Math.Round(roundRatios.Max(), 3),
            ["ours_first_loss"] = Math.Round(ours[0].FirstLoss, 5),
            ["peer_first_loss"] = peers.Count == 0 ? null : Math.Round(peers[0].FirstLoss, 5),
            ["loss_difference"] = peers.Count == 0 ? null : Math.Abs(ours[0].FirstLoss - peers[0].FirstLoss),
            ["loss_tolerance"] = LossTolerance(dtype),
            ["peer"] = peer,
            ["load_average"] = MachineInfo.LoadText(),
        };
    }

    /// <summary>
    /// How far the first step's loss may differ: f32 sums in another order (1e-3 of a loss near ln V); in bf16 the peer
    /// also rounds every activation to bf16, we keep them in f32, so only the scale of bf16's rounding holds (5e-2).
    /// </summary>
    static double LossTolerance(DType dtype) => dtype == DType.F32 ? 1e-3 : 5e-2;

    /// <summary>The step times after a warm-up, and the loss of the first step.</summary>
    static Side Measure(Case c, DType dtype)
    {
        using var model = DecoderModel.FromWeights(c.Config, RandomWeights.Build(c.Config, dtype, seed: 1));
        var plugin = Bridge.Create(model, new PrecomputedFeatures(c.VisionWidth, ImageTokens), new BridgeOptions { Seed = ProjectorSeed });
        var trainable = plugin.Parameters.Select(p => p.Tensor).ToList();
        var optimizer = new AdamW(ParameterGroup.SplitByDecay(plugin.Parameters.Select(p => (p.Name, p.Tensor)), 1e-4f, 0f));
        var prompts = Prompts(c);
        var times = new List<double>();
        double firstLoss = double.NaN;
        for (int step = 0; step < c.WarmupSteps + c.Steps; step++)
        {
            var watch = Stopwatch.StartNew();
            long targets = 0;
            double lossSum = 0;
            foreach (var prompt in prompts)
            {
                var (loss, count) = TrainingStep.Accumulate(model, plugin.Prepare(prompt));
                targets += count;
                lossSum += loss * count;
            }
            TrainingStep.Apply(trainable, optimizer, targets, maxNorm: 1f);
            if (step == 0) firstLoss = lossSum / targets;
            if (step >= c.WarmupSteps) times.Add(watch.Elapsed.TotalSeconds);
        }
        return new Side(times, firstLoss);
    }

    /// <summary>The step's sequences, the same on both sides.</summary>
    internal static MultimodalPrompt[] Prompts(Case c)
    {
        var random = new Random(2);
        return Enumerable.Range(0, c.Batch).Select(_ => Sequence(random, c)).ToArray();
    }

    /// <summary>[lead text][image: random features][context text][answer text, the targets].</summary>
    static MultimodalPrompt Sequence(Random random, Case c)
    {
        int[] Ids(int n) => Enumerable.Range(0, n).Select(_ => random.Next(c.Config.VocabSize)).ToArray();
        var features = new float[ImageTokens * c.VisionWidth];
        for (int i = 0; i < features.Length; i++) features[i] = (float)(random.NextDouble() * 2 - 1);
        return new MultimodalPrompt([new TextPart(Ids(LeadTokens)), new ImagePart(Tensor.FromArray(features, ImageTokens, c.VisionWidth)),
            new TextPart(Ids(ContextTokens)), new TextPart(Ids(AnswerTokens), IsAssistant: true)]);
    }

    static Side? RunPeer(Case c, DType dtype, int layers, out string? problem, out string? name)
    {
        var request = new JsonObject
        {
            ["case"] = c.Key, ["layers"] = layers, ["dtype"] = dtype == DType.F32 ? "f32" : "bf16", ["threads"] = Environment.ProcessorCount,
        };
        name = null;
        using var document = PeerProcess.Run("torch-train", request, out problem);
        if (document is null) return null;
        var root = document.RootElement;
        name = root.GetProperty("peer").GetString();
        return new Side(PeerProcess.Doubles(root.GetProperty("step_seconds")).ToList(), root.GetProperty("first_loss").GetDouble());
    }

    static void PrintTable(List<JsonObject> rows, string? peerName, string? peerProblem)
    {
        var c = CultureInfo.InvariantCulture;
        Console.WriteLine(peerName is null ? $"Peer: none ({peerProblem}); peer columns are empty." : $"Peer: {peerName}.");
        Console.WriteLine($"Load average at the end: {MachineInfo.LoadText()}");
        Console.WriteLine();
        string[] header = ["base", "dtype", "seq/step", "ours step s", "ours tok/s", "peer tok/s", "ratio", "per round", "loss ours/peer (tol)"];
        var cells = rows.Select(r => new[]
        {
            (string)r["base"]!, (string)r["dtype"]!, r["sequences_per_step"]!.ToString(),
            r["ours_step_s"]!.GetValue<double>().ToString("F3", c), r["ours_tokens_per_s"]!.GetValue<double>().ToString("F0", c),
            r["peer_tokens_per_s"] is { } p ? p.GetValue<double>().ToString("F0", c) : "-",
            r["ratio"] is { } q ? q.GetValue<double>().ToString("F2", c) : "-",
            r["ratio_min"] is { } lo ? $"{lo.GetValue<double>().ToString("F2", c)}-{r["ratio_max"]!.GetValue<double>().ToString("F2", c)}" : "-",
            $"{r["ours_first_loss"]!.GetValue<double>().ToString("F4", c)}/{(r["peer_first_loss"] is { } pl ? pl.GetValue<double>().ToString("F4", c) : "-")} ({r["loss_tolerance"]!.GetValue<double>().ToString("G2", c)})",
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, cells.Max(cell => cell[i].Length))).ToArray();
        Console.WriteLine(string.Join("  ", header.Select((h, i) => i < 2 ? h.PadRight(widths[i]) : h.PadLeft(widths[i]))));
        foreach (var cell in cells)
            Console.WriteLine(string.Join("  ", cell.Select((v, i) => i < 2 ? v.PadRight(widths[i]) : v.PadLeft(widths[i]))));
    }

    /// <summary>A stand-in front end for features given with each image (the bench has no tower): it describes their shape only.</summary>
    sealed class PrecomputedFeatures(int width, int tokens) : IVisionFrontEnd
    {
        public string Kind => "precomputed";
        public int FeatureWidth => width;
        public int TokensPerImage => tokens;
        public IReadOnlyDictionary<string, string> Summary => new Dictionary<string, string> { ["width"] = width.ToString(CultureInfo.InvariantCulture) };
        public string Fingerprint => $"precomputed:{width}x{tokens}";
        public Tensor Encode(RgbImage image) => throw new NotSupportedException("the bench gives every image as precomputed features");
    }
}
