using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Tensor = Graft.Tensors.Tensor;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Text.Json;
using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Benchmarking;

/// <summary>
/// `graft bench decode`: prefill and cached decoding of a Qwen2-0.5B-shaped decoder with random weights
/// built in memory, in f32 and bf16, against the same model written in plain PyTorch, with the weight
/// bandwidth decoding reaches beside the machine's memory read bandwidth.
/// </summary>
internal static class DecodeBench
{
    const int PromptTokens = 512;
    const int DecodeTokens = 128;
    /// <summary>
    /// The peer decodes fewer steps (its median over a slightly shorter context, which only favours it): at
    /// ~2 tokens/s 128 steps alone would take a minute, several on a loaded machine.
    /// </summary>
    const int PeerDecodeTokens = 32;
    const string PeerScriptName = "decode_peer.py";

    /// <summary>Qwen2-0.5B's shape (config.json of Qwen/Qwen2-0.5B), with the layer count adjustable.</summary>
    internal static LlmConfig Qwen2HalfBillion(int layers) => new()
    {
        Family = LlmFamily.Qwen2,
        Architecture = "Qwen2ForCausalLM",
        VocabSize = 151936,
        HiddenSize = 896,
        IntermediateSize = 4864,
        NumLayers = layers,
        NumHeads = 14,
        NumKeyValueHeads = 2,
        HeadDim = 64,
        RmsNormEps = 1e-6f,
        RopeTheta = 1_000_000,
        RopeScaling = RopeScaling.None,
        MaxPositionEmbeddings = 32768,
        TieWordEmbeddings = true,
        QkvBias = true,
        OutputBias = false,
        MlpBias = false,
        BosTokenIds = [],
        EosTokenIds = [],
    };

    /// <summary>One timed phase: tokens per second (median of the repeats or steps) for one side.</summary>
    sealed record PeerReport(string TorchVersion, double PrefillTokensPerSecond, double DecodeTokensPerSecond);

    public static Command Create() => BenchCommand.QwenShapedCommand("decode",
        $"Prefill ({PromptTokens} tokens) and KV-cached decode ({DecodeTokens} tokens) of a Qwen2-0.5B-shaped model with random weights, f32 and bf16, vs PyTorch.", Run);

    static int Run(bool json, int layers, bool noPeer)
    {
        var config = Qwen2HalfBillion(layers);
        // The peer runs first and exits, so its weights and ours are never resident together.
        string? peerProblem = null;
        PeerReport? peer = null;
        if (noPeer) peerProblem = "peer skipped (--no-peer)";
        else peer = RunPeer(config, out peerProblem);

        // Measured before each model and after the last, the highest kept: neighbours on a shared machine come
        // and go, and a ceiling taken in a busy moment would flatter the decode figures beside it.
        double bandwidth = 0;
        var measured = new List<(DType DType, double Prefill, double Decode, long WeightBytes, double AllocatedPerToken)>();
        foreach (var dtype in new[] { DType.F32, DType.BF16 })
        {
            bandwidth = Math.Max(bandwidth, GemmBench.MeasureReadBandwidth());
            var (prefill, decode, weightBytes, allocatedPerToken) = Measure(config, dtype);
            measured.Add((dtype, prefill, decode, weightBytes, allocatedPerToken));
            // The f32 model (2 GB at full depth) is dropped before the bf16 one is built.
            GC.Collect();
        }
        bandwidth = Math.Max(bandwidth, GemmBench.MeasureReadBandwidth());
        var rows = new List<JsonObject>();
        foreach (var (dtype, prefill, decode, weightBytes, allocatedPerToken) in measured)
        {
            double? peerPrefill = dtype == DType.F32 ? peer?.PrefillTokensPerSecond : null;
            double? peerDecode = dtype == DType.F32 ? peer?.DecodeTokensPerSecond : null;
            rows.Add(Row(config, dtype, "prefill", prefill, peerPrefill, null, bandwidth, null));
            rows.Add(Row(config, dtype, "decode", decode, peerDecode, weightBytes * decode / 1e9, bandwidth, allocatedPerToken));
        }
        if (json)
            foreach (var row in rows) Console.WriteLine(row.ToJsonString());
        else
            PrintTable(config, rows, peer, peerProblem, bandwidth);
        return 0;
    }

    static JsonObject Row(LlmConfig config, DType dtype, string phase, double ours, double? peer, double? gbps, double bandwidth, double? allocated) => new()
    {
        ["model"] = $"qwen2-0.5b-shape-{config.NumLayers}L",
        ["dtype"] = dtype == DType.F32 ? "f32" : "bf16",
        ["phase"] = phase,
        ["ours_tokens_per_s"] = Round(ours),
        ["peer_tokens_per_s"] = peer is null ? null : Round(peer.Value),
        ["ratio"] = peer is null ? null : Round(ours / peer.Value),
        ["gbps"] = gbps is null ? null : Round(gbps.Value),
        ["bandwidth_gbps"] = Round(bandwidth),
        ["ours_allocated_bytes_per_token"] = allocated is null ? null : Math.Round(allocated.Value),
        ["peer_note"] = dtype == DType.F32 ? null : "no bf16 peer: Debian's torch crashes on bf16 matmul on this CPU",
    };

    static double Round(double value) => Math.Round(value, 3);

    /// <summary>
    /// Prefill tokens/s (one 512-token forward after a short warm-up) and decode tokens/s (the median of 128
    /// single-token steps over the cache the prefill filled), the weight bytes a decode step reads, and the
    /// bytes the calling thread allocates per decode step.
    /// </summary>
    static (double Prefill, double Decode, long WeightBytes, double AllocatedPerToken) Measure(LlmConfig config, DType dtype)
    {
        using var model = DecoderModel.FromWeights(config, RandomWeights.Build(config, dtype, seed: 1));
        var prompt = new int[PromptTokens];
        var random = new Random(2);
        for (int i = 0; i < prompt.Length; i++) prompt[i] = random.Next(config.VocabSize);
        var cache = new KvCache(config, PromptTokens + DecodeTokens);

        // Warm-up: lets tiered JIT compile the hot loops and thread-pool threads start before anything is timed.
        model.Forward(prompt.AsSpan(0, 32), cache, lastPositionOnly: true);
        for (int i = 0; i < 4; i++) model.Forward([prompt[i]], cache, lastPositionOnly: true);
        cache.Reset();

        var watch = Stopwatch.StartNew();
        var logits = model.Forward(prompt, cache, lastPositionOnly: true);
        double prefillSeconds = watch.Elapsed.TotalSeconds;

        var steps = new double[DecodeTokens];
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        int[] next = [TensorPrimitives.IndexOfMax(logits.Span)];
        for (int i = 0; i < DecodeTokens; i++)
        {
            watch.Restart();
            logits = model.Forward(next, cache, lastPositionOnly: true);
            next[0] = TensorPrimitives.IndexOfMax(logits.Span);
            steps[i] = watch.Elapsed.TotalSeconds;
        }
        double allocatedPerToken = (GC.GetAllocatedBytesForCurrentThread() - allocatedBefore) / (double)DecodeTokens;
        Array.Sort(steps);
        return (PromptTokens / prefillSeconds, 1 / steps[steps.Length / 2], model.WeightBytes, allocatedPerToken);
    }

    static void PrintTable(LlmConfig config, List<JsonObject> rows, PeerReport? peer, string? peerProblem, double bandwidth)
    {
        Console.WriteLine($"graft bench decode: Qwen2-0.5B shape, {config.NumLayers} layers, random weights, {Environment.ProcessorCount} threads");
        Console.WriteLine($"Prefill: one {PromptTokens}-token forward (after a warm-up). Decode: median of {DecodeTokens} single-token steps over that cache"
            + $" (the peer: median of its first {PeerDecodeTokens} steps).");
        Console.WriteLine(peer is null
            ? $"Peer: none ({peerProblem}); peer columns are empty."
            : $"Peer: PyTorch {peer.TorchVersion}, eager, no_grad, 2 threads, same shapes and measurement, f32 only"
              + " (Debian's torch crashes on bf16 matmul on this CPU, so bf16 rows have no peer).");
        Console.WriteLine($"Memory read bandwidth (sum of 1 GiB, {Environment.ProcessorCount} threads, best of before, between and after the models): {bandwidth:F1} GB/s. "
            + "Weight GB/s = bytes of weights a decode step reads (tied head included) x tokens/s.");
        Console.WriteLine();
        string[] header = ["dtype", "phase", "ours tok/s", "peer tok/s", "ratio", "weight GB/s", "% of bw", "alloc B/token"];
        var cells = rows.Select(r => new[]
        {
            (string)r["dtype"]!, (string)r["phase"]!,
            Format(r["ours_tokens_per_s"], "F2"), Format(r["peer_tokens_per_s"], "F2"), Format(r["ratio"], "F2"), Format(r["gbps"], "F1"),
            r["gbps"] is null ? "-" : (100 * r["gbps"]!.GetValue<double>() / bandwidth).ToString("F0", CultureInfo.InvariantCulture),
            Format(r["ours_allocated_bytes_per_token"], "F0"),
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, cells.Max(c => c[i].Length))).ToArray();
        Console.WriteLine(string.Join("  ", header.Select((h, i) => i < 2 ? h.PadRight(widths[i]) : h.PadLeft(widths[i]))));
        foreach (var c in cells)
            Console.WriteLine(string.Join("  ", c.Select((v, i) => i < 2 ? v.PadRight(widths[i]) : v.PadLeft(widths[i]))));
    }

    static string Format(JsonNode? node, string format) => node is null ? "-" : node.GetValue<double>().ToString(format, CultureInfo.InvariantCulture);

    /// <summary>Runs tools/bench/decode_peer.py under /usr/bin/python3; null (with the reason) when it cannot.</summary>
    static PeerReport? RunPeer(LlmConfig config, out string? problem)
    {
        var request = new JsonObject
        {
            ["vocab"] = config.VocabSize, ["hidden"] = config.HiddenSize, ["intermediate"] = config.IntermediateSize,
            ["layers"] = config.NumLayers, ["heads"] = config.NumHeads, ["kv_heads"] = config.NumKeyValueHeads,
            ["head_dim"] = config.HeadDim, ["rope_theta"] = config.RopeTheta, ["eps"] = config.RmsNormEps,
            ["prompt_tokens"] = PromptTokens, ["decode_tokens"] = PeerDecodeTokens,
        };
        using var document = PythonPeer.Run(PeerScriptName, request, "torch", out problem);
        if (document is null) return null;
        var root = document.RootElement;
        return new PeerReport(root.GetProperty("torch").GetString()!,
            root.GetProperty("prefill_tokens_per_s").GetDouble(), root.GetProperty("decode_tokens_per_s").GetDouble());
    }
}

/// <summary>Random weights of a decoder's shape, made in memory (fast, parallel, reproducible per seed).</summary>
internal static class RandomWeights
{
    /// <summary>Matrices uniform in ±0.05 (std ≈ 0.03, near Hugging Face's 0.02 init), norms 1, biases ±0.01; matrices in <paramref name="dtype"/>, the rest f32.</summary>
    public static DecoderWeights Build(LlmConfig c, DType dtype, int seed)
    {
        int hidden = c.HiddenSize, q = c.NumHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim, inter = c.IntermediateSize;
        int stream = seed * 1000;
        Tensor Matrix(int rows, int cols) => Fill(dtype, [rows, cols], 0.05f, stream++);
        Tensor Bias(int n) => Fill(DType.F32, [n], 0.01f, stream++);
        var layers = new DecoderLayerWeights[c.NumLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            layers[i] = new DecoderLayerWeights
            {
                AttentionNorm = Tensor.Full(1f, hidden),
                Query = Matrix(q, hidden),
                Key = Matrix(kv, hidden),
                Value = Matrix(kv, hidden),
                Output = Matrix(hidden, q),
                QueryBias = c.QkvBias ? Bias(q) : null,
                KeyBias = c.QkvBias ? Bias(kv) : null,
                ValueBias = c.QkvBias ? Bias(kv) : null,
                FfnNorm = Tensor.Full(1f, hidden),
                Gate = Matrix(inter, hidden),
                Up = Matrix(inter, hidden),
                Down = Matrix(hidden, inter),
            };
        }
        var embedding = Matrix(c.VocabSize, hidden);
        return new DecoderWeights
        {
            Embedding = embedding,
            Layers = layers,
            FinalNorm = Tensor.Full(1f, hidden),
            Head = c.TieWordEmbeddings ? embedding : Matrix(c.VocabSize, hidden),
        };
    }

    /// <summary>Uniform values in ±<paramref name="scale"/>, filled in parallel blocks, each from its own xorshift stream.</summary>
    static Tensor Fill(DType dtype, int[] shape, float scale, int stream)
    {
        int length = (int)Tensor.ShapeLength(shape);
        const int block = 1 << 16;
        int blocks = (length + block - 1) / block;
        if (dtype == DType.F32)
        {
            var values = new float[length];
            Parallel.For(0, blocks, b => Uniform(values.AsSpan(b * block, Math.Min(block, length - b * block)), scale, stream, b));
            return Tensor.FromArray(values, shape);
        }
        var bits = new ushort[length];
        Parallel.For(0, blocks, b =>
        {
            int count = Math.Min(block, length - b * block);
            var values = new float[count];
            Uniform(values, scale, stream, b);
            HalfConvert.FloatToBf16(values, bits.AsSpan(b * block, count));
        });
        return Tensor.FromHalfBits(bits, dtype, shape);
    }

    static void Uniform(Span<float> values, float scale, int stream, int block)
    {
        ulong state = 0x9E3779B97F4A7C15UL * (ulong)(stream + 1) ^ (ulong)(block + 1) * 0xD1B54A32D192ED03UL;
        for (int i = 0; i < values.Length; i++)
        {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            values[i] = ((state >> 40) * (1f / (1 << 24)) * 2f - 1f) * scale;
        }
    }
}
