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
/// memory: a small one (the demo's scale) and a Qwen2-0.5B shape; f32 against the same step written in PyTorch in the
/// same run, and bf16 base weights (ours only).
/// </summary>
internal static class TrainBench
{
    const int LeadTokens = 16, ImageTokens = 64, ContextTokens = 144, AnswerTokens = 32;
    const int SequenceLength = LeadTokens + ImageTokens + ContextTokens + AnswerTokens;
    const string PeerScriptName = "train_peer.py";

    /// <summary>A base to time: its shape, the vision width the projector reads, sequences per step, and warm-up and timed steps.</summary>
    sealed record Case(string Name, LlmConfig Config, int VisionWidth, int Batch, int WarmupSteps, int Steps);

    sealed record PeerReport(string TorchVersion, double TokensPerSecond);

    /// <summary>The demo's scale: a Qwen2-style decoder of width 128, 4 layers, 2,048 tokens.</summary>
    static LlmConfig Small() => DecodeBench.Qwen2HalfBillion(4) with
    {
        VocabSize = 2048, HiddenSize = 128, IntermediateSize = 384, NumHeads = 4, NumKeyValueHeads = 2, HeadDim = 32, MaxPositionEmbeddings = 512,
    };

    public static Command Create() => BenchCommand.QwenShapedCommand("train",
        $"One Bridge training step (forward + backward + AdamW) on a small and a Qwen2-0.5B-shaped base, {SequenceLength}-token multimodal sequences, vs PyTorch.", Run);

    static int Run(bool json, int layers, bool noPeer)
    {
        Case[] cases =
        [
            new("small (d 128, 4 layers, vocab 2048)", Small(), VisionWidth: 128, Batch: 8, WarmupSteps: 2, Steps: 7),
            new($"qwen2-0.5b shape ({layers} layers)", DecodeBench.Qwen2HalfBillion(layers), VisionWidth: 1024, Batch: 1, WarmupSteps: 1, Steps: 3),
        ];
        var rows = new List<JsonObject>();
        string? peerVersion = null, peerProblem = noPeer ? "peer skipped (--no-peer)" : null;
        foreach (var c in cases)
        {
            // The peer runs first and exits, so its weights and ours are never resident together.
            PeerReport? peer = noPeer ? null : RunPeer(c, out peerProblem);
            peerVersion ??= peer?.TorchVersion;
            foreach (var dtype in new[] { DType.F32, DType.BF16 })
            {
                var (tokensPerSecond, stepSeconds) = Measure(c, dtype);
                double? peerRate = dtype == DType.F32 ? peer?.TokensPerSecond : null;
                var row = new JsonObject
                {
                    ["base"] = c.Name,
                    ["dtype"] = dtype == DType.F32 ? "f32" : "bf16",
                    ["design"] = "bridge",
                    ["sequences_per_step"] = c.Batch,
                    ["tokens_per_sequence"] = SequenceLength,
                    ["ours_step_s"] = Math.Round(stepSeconds, 4),
                    ["ours_tokens_per_s"] = Math.Round(tokensPerSecond, 1),
                    ["peer_tokens_per_s"] = peerRate is null ? null : Math.Round(peerRate.Value, 1),
                    ["ratio"] = peerRate is null ? null : Math.Round(tokensPerSecond / peerRate.Value, 3),
                    ["peer_note"] = dtype == DType.F32 ? null : "no bf16 peer: Debian's torch crashes on bf16 matmul on this CPU",
                };
                rows.Add(row);
                if (json) Console.WriteLine(row.ToJsonString());
                GC.Collect();
            }
        }
        if (!json) PrintTable(rows, peerVersion, peerProblem);
        return 0;
    }

    /// <summary>Tokens per second (positions of a step / median step time) and the median step time.</summary>
    static (double TokensPerSecond, double StepSeconds) Measure(Case c, DType dtype)
    {
        using var model = DecoderModel.FromWeights(c.Config, RandomWeights.Build(c.Config, dtype, seed: 1));
        var plugin = Bridge.Create(model, new PrecomputedFeatures(c.VisionWidth, ImageTokens), new BridgeOptions { Seed = 3 });
        var trainable = plugin.Parameters.Select(p => p.Tensor).ToList();
        var optimizer = new AdamW(ParameterGroup.SplitByDecay(plugin.Parameters.Select(p => (p.Name, p.Tensor)), 1e-4f, 0f));
        var random = new Random(2);
        var prompts = Enumerable.Range(0, c.Batch).Select(_ => Sequence(random, c)).ToArray();
        var times = new List<double>();
        for (int step = 0; step < c.WarmupSteps + c.Steps; step++)
        {
            var watch = Stopwatch.StartNew();
            long targets = 0;
            foreach (var prompt in prompts) targets += TrainingStep.Accumulate(model, plugin.Prepare(prompt)).Targets;
            TrainingStep.Apply(trainable, optimizer, targets, maxNorm: 1f);
            if (step >= c.WarmupSteps) times.Add(watch.Elapsed.TotalSeconds);
        }
        times.Sort();
        double median = times[times.Count / 2];
        return (c.Batch * SequenceLength / median, median);
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

    static PeerReport? RunPeer(Case c, out string? problem)
    {
        var config = c.Config;
        var request = new JsonObject
        {
            ["vocab"] = config.VocabSize, ["hidden"] = config.HiddenSize, ["intermediate"] = config.IntermediateSize,
            ["layers"] = config.NumLayers, ["heads"] = config.NumHeads, ["kv_heads"] = config.NumKeyValueHeads,
            ["head_dim"] = config.HeadDim, ["rope_theta"] = config.RopeTheta, ["eps"] = config.RmsNormEps,
            ["vision_width"] = c.VisionWidth, ["threads"] = Environment.ProcessorCount, ["batch"] = c.Batch,
            ["lead_tokens"] = LeadTokens, ["image_tokens"] = ImageTokens, ["context_tokens"] = ContextTokens, ["answer_tokens"] = AnswerTokens,
            ["warmup_steps"] = c.WarmupSteps, ["steps"] = c.Steps,
        };
        using var document = PythonPeer.Run(PeerScriptName, request, "torch", out problem);
        if (document is null) return null;
        var root = document.RootElement;
        return new PeerReport(root.GetProperty("torch").GetString()!, root.GetProperty("tokens_per_s").GetDouble());
    }

    static void PrintTable(List<JsonObject> rows, string? peerVersion, string? peerProblem)
    {
        var c = CultureInfo.InvariantCulture;
        Console.WriteLine($"graft bench train: one Bridge (LLaVA projector) training step, {Environment.ProcessorCount} threads, random weights");
        Console.WriteLine($"A step: forward of the batch ({SequenceLength}-token sequences: {LeadTokens} text, {ImageTokens} image rows from the projector, "
            + $"{ContextTokens} text, {AnswerTokens} answer tokens), cross-entropy on the answer tokens (head on those positions only),");
        Console.WriteLine("backward through the frozen decoder to the projector, AdamW on the projector; median of the timed steps after a warm-up.");
        Console.WriteLine(peerVersion is null
            ? $"Peer: none ({peerProblem}); peer columns are empty."
            : $"Peer: PyTorch {peerVersion}, eager, the same step with the batch as one [B, T] tensor, f32 only"
              + " (Debian's torch crashes on bf16 matmul on this CPU, so bf16 rows have no peer). Ours runs the batch one sequence at a time, as the trainer does.");
        Console.WriteLine();
        string[] header = ["base", "dtype", "seq/step", "ours step s", "ours tok/s", "peer tok/s", "ratio"];
        var cells = rows.Select(r => new[]
        {
            (string)r["base"]!, (string)r["dtype"]!, r["sequences_per_step"]!.ToString(),
            r["ours_step_s"]!.GetValue<double>().ToString("F3", c), r["ours_tokens_per_s"]!.GetValue<double>().ToString("F0", c),
            r["peer_tokens_per_s"] is { } p ? p.GetValue<double>().ToString("F0", c) : "-",
            r["ratio"] is { } q ? q.GetValue<double>().ToString("F2", c) : "-",
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
