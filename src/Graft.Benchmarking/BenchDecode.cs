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
/// `graft bench decode`: prefill and cached decoding of a Qwen2-0.5B-shaped decoder with random weights built in
/// memory, in f32 and bf16, against the same weights in libtorch (graft-peers torch-decode) and in llama.cpp
/// (graft-peers llama-decode, the weights written as GGUF), each measured in the same run and checked to agree with
/// ours (the prompt's logits, the greedy tokens); with the weight bandwidth decoding reaches beside the machine's
/// memory read bandwidth.
/// </summary>
internal static class DecodeBench
{
    const int PromptTokens = 512;
    /// <summary>Greedy steps per side and round, the same on every side.</summary>
    const int DecodeTokens = 32;

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

    const int PrefillRepeats = 2;

    public static Command Create() => BenchCommand.QwenShapedCommand("decode",
        $"Prefill ({PromptTokens} tokens) and KV-cached decode of a Qwen2-0.5B-shaped model with random weights, f32 and bf16, vs libtorch and llama.cpp.", Run);

    /// <summary>One side's measurements in one round: prefill seconds per repeat, decode seconds per step, the prompt's last logits, greedy tokens.</summary>
    sealed record Side(double[] PrefillSeconds, double[] DecodeSeconds, float[] Logits, int[] Tokens, string Name, string? Note);

    sealed record Peer(string Key, string Label);

    static readonly Peer[] Peers = [new("torch-decode", "libtorch"), new("llama-decode", "llama.cpp")];

    static int Run(BenchOptions options)
    {
        var config = Qwen2HalfBillion(options.Layers);
        var prompt = new int[PromptTokens];
        var random = new Random(2);
        for (int i = 0; i < prompt.Length; i++) prompt[i] = random.Next(config.VocabSize);
        if (options.Json) Console.WriteLine(MachineInfo.Describe().ToJsonString());
        else
        {
            Console.WriteLine($"graft bench decode: Qwen2-0.5B shape, {config.NumLayers} layers, random weights, {Environment.ProcessorCount} threads");
            Console.WriteLine(MachineInfo.Line());
            Console.WriteLine($"Prefill: a {PromptTokens}-token forward, best of {PrefillRepeats}. Decode: {DecodeTokens} greedy single-token steps over that cache, "
                + "1 / median step. Each side runs in its own process, the peers first, then ours, for each of "
                + $"{options.Rounds} round(s); tok/s from each side's best round, ratios per round as ranges.");
            Console.WriteLine();
        }
        var rows = new List<JsonObject>();
        var problems = new Dictionary<string, string>();
        var names = new Dictionary<string, string>();
        double bandwidth = 0;
        foreach (var dtype in new[] { DType.F32, DType.BF16 })
        {
            var ours = new List<Side>();
            var peers = Peers.ToDictionary(p => p.Key, _ => new List<Side>());
            long weightBytes = 0;
            for (int round = 0; round < options.Rounds; round++)
            {
                foreach (var peer in Peers)
                {
                    if (options.NoPeer || round > 0 && peers[peer.Key].Count == 0 || problems.ContainsKey(peer.Key + dtype)) continue;
                    var side = RunPeer(peer, options.Layers, dtype, prompt, out var problem);
                    if (side is null) problems[peer.Key + dtype] = problem!;
                    else { peers[peer.Key].Add(side); names[peer.Key + dtype] = side.Name + (side.Note is null ? "" : $" ({side.Note})"); }
                }
                bandwidth = Math.Max(bandwidth, GemmBench.MeasureReadBandwidth());
                var (mine, bytes) = Measure(config, dtype, prompt);
                ours.Add(mine);
                weightBytes = bytes;
                // The f32 model (2 GB at full depth) is dropped before anything else is built.
                GC.Collect();
            }
            foreach (string phase in new[] { "prefill", "decode" })
            {
                var row = Row(config, dtype, phase, ours, peers, weightBytes, bandwidth);
                foreach (var peer in Peers)
                {
                    string key = peer.Key + dtype;
                    row[$"{Short(peer)}_peer"] = names.TryGetValue(key, out var name) ? name : problems.GetValueOrDefault(key, "skipped (--no-peer)");
                }
                rows.Add(row);
                if (options.Json) Console.WriteLine(row.ToJsonString());
            }
        }
        if (!options.Json) PrintTable(rows, names, problems, bandwidth);
        return 0;
    }

    static string Short(Peer peer) => peer.Key.StartsWith("torch", StringComparison.Ordinal) ? "torch" : "llama";

    static JsonObject Row(LlmConfig config, DType dtype, string phase, List<Side> ours, Dictionary<string, List<Side>> peers, long weightBytes, double bandwidth)
    {
        bool prefill = phase == "prefill";
        double Rate(Side s) => prefill ? PromptTokens / s.PrefillSeconds.Min() : 1 / Median(s.DecodeSeconds);
        double oursBest = ours.Max(Rate);
        var row = new JsonObject
        {
            ["model"] = $"qwen2-0.5b-shape-{config.NumLayers}L",
            ["dtype"] = dtype == DType.F32 ? "f32" : "bf16",
            ["phase"] = phase,
            ["ours_tokens_per_s"] = Round(oursBest),
            ["gbps"] = prefill ? null : Round(weightBytes * oursBest / 1e9),
            ["bandwidth_gbps"] = Round(bandwidth),
            ["load_average"] = MachineInfo.LoadText(),
        };
        foreach (var peer in Peers)
        {
            var sides = peers[peer.Key];
            string p = Short(peer);
            if (sides.Count == 0) { row[$"{p}_tokens_per_s"] = null; row[$"{p}_ratio"] = null; continue; }
            double best = sides.Max(Rate);
            var perRound = ours.Zip(sides, (o, s) => Rate(o) / Rate(s)).ToArray();
            row[$"{p}_tokens_per_s"] = Round(best);
            row[$"{p}_ratio"] = Round(oursBest / best);
            row[$"{p}_ratio_min"] = Round(perRound.Min());
            row[$"{p}_ratio_max"] = Round(perRound.Max());
            if (prefill)
            {
                var (maxDifference, scale) = Compare(ours[0].Logits, sides[0].Logits);
                row[$"{p}_logits_max_abs_difference"] = maxDifference;
                row[$"{p}_logits_relative_difference"] = maxDifference / scale;
                row[$"{p}_logits_tolerance"] = LogitsTolerance(dtype, peer);
                row[$"{p}_logits_agree"] = maxDifference / scale <= LogitsTolerance(dtype, peer);
            }
            else
            {
                int same = 0;
                while (same < Math.Min(ours[0].Tokens.Length, sides[0].Tokens.Length) && ours[0].Tokens[same] == sides[0].Tokens[same]) same++;
                row[$"{p}_greedy_tokens_equal"] = $"{same} of {Math.Min(ours[0].Tokens.Length, sides[0].Tokens.Length)}";
            }
        }
        return row;
    }

    /// <summary>
    /// Relative to the largest logit: f32 sides differ by summation order only (1e-4); bf16 peers also round every
    /// activation to bf16 (libtorch's bf16 model, llama.cpp's bf16 dot products), where we keep f32 activations (5e-2).
    /// </summary>
    static double LogitsTolerance(DType dtype, Peer peer) => dtype == DType.F32 ? 1e-4 : 5e-2;

    static (double MaxDifference, double Scale) Compare(float[] ours, float[] peer)
    {
        double max = 0, scale = 0;
        for (int i = 0; i < Math.Min(ours.Length, peer.Length); i++)
        {
            max = Math.Max(max, Math.Abs(ours[i] - peer[i]));
            scale = Math.Max(scale, Math.Abs(ours[i]));
        }
        return (ours.Length == peer.Length ? max : double.PositiveInfinity, Math.Max(scale, 1e-30));
    }

    static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }

    static double Round(double value) => Math.Round(value, 3);

    /// <summary>Our side of one round: prefill repeats, decode steps, the prompt's last logits and the greedy tokens; and the weight bytes a step reads.</summary>
    static (Side Side, long WeightBytes) Measure(LlmConfig config, DType dtype, int[] prompt)
    {
        using var model = DecoderModel.FromWeights(config, RandomWeights.Build(config, dtype, seed: 1));
        var cache = new KvCache(config, PromptTokens + DecodeTokens);

        // Warm-up: lets tiered JIT compile the hot loops and thread-pool threads start before anything is timed.
        model.Forward(prompt.AsSpan(0, 32), cache, lastPositionOnly: true);
        for (int i = 0; i < 4; i++) model.Forward([prompt[32 + i]], cache, lastPositionOnly: true);

        var prefill = new double[PrefillRepeats];
        Tensor logits = null!;
        for (int r = 0; r < PrefillRepeats; r++)
        {
            cache.Reset();
            var watch = Stopwatch.StartNew();
            logits = model.Forward(prompt, cache, lastPositionOnly: true);
            prefill[r] = watch.Elapsed.TotalSeconds;
        }
        var promptLogits = logits.ToArray();
        var steps = new double[DecodeTokens];
        var tokens = new int[DecodeTokens];
        int[] next = [TensorPrimitives.IndexOfMax(logits.Span)];
        for (int i = 0; i < DecodeTokens; i++)
        {
            tokens[i] = next[0];
            var watch = Stopwatch.StartNew();
            logits = model.Forward(next, cache, lastPositionOnly: true);
            next[0] = TensorPrimitives.IndexOfMax(logits.Span);
            steps[i] = watch.Elapsed.TotalSeconds;
        }
        return (new Side(prefill, steps, promptLogits, tokens, "Graft", null), model.WeightBytes);
    }

    static void PrintTable(List<JsonObject> rows, Dictionary<string, string> names, Dictionary<string, string> problems, double bandwidth)
    {
        foreach (var dtype in new[] { DType.F32, DType.BF16 })
            foreach (var peer in Peers)
            {
                string key = peer.Key + dtype;
                Console.WriteLine($"{peer.Label} {(dtype == DType.F32 ? "f32" : "bf16")}: "
                    + (names.TryGetValue(key, out var name) ? name : "none: " + problems.GetValueOrDefault(key, "skipped (--no-peer)")));
            }
        Console.WriteLine($"Memory read bandwidth (sum of 1 GiB, {Environment.ProcessorCount} threads, best over the rounds): {bandwidth:F1} GB/s. "
            + "Weight GB/s = bytes of weights a decode step reads (tied head included) x tokens/s.");
        Console.WriteLine($"Load average at the end: {MachineInfo.LoadText()}");
        Console.WriteLine();
        string[] header = ["dtype", "phase", "ours tok/s", "libtorch", "ratio (rounds)", "llama.cpp", "ratio (rounds)", "weight GB/s", "% of bw", "agreement with libtorch / llama.cpp"];
        string Agreement(JsonObject r, string p) => r[$"{p}_logits_relative_difference"] is { } d
            ? $"logits {d.GetValue<double>():0.0e+0} (tol {r[$"{p}_logits_tolerance"]!.GetValue<double>():0e+0})"
            : r[$"{p}_greedy_tokens_equal"] is { } g ? $"tokens {(string)g!}" : "-";
        string Ratio(JsonObject r, string p) => r[$"{p}_ratio"] is { } q
            ? $"{q.GetValue<double>():F2} ({r[$"{p}_ratio_min"]!.GetValue<double>():F2}-{r[$"{p}_ratio_max"]!.GetValue<double>():F2})" : "-";
        var cells = rows.Select(r => new[]
        {
            (string)r["dtype"]!, (string)r["phase"]!,
            Format(r["ours_tokens_per_s"], "F2"), Format(r["torch_tokens_per_s"], "F2"), Ratio(r, "torch"),
            Format(r["llama_tokens_per_s"], "F2"), Ratio(r, "llama"), Format(r["gbps"], "F1"),
            r["gbps"] is null ? "-" : (100 * r["gbps"]!.GetValue<double>() / bandwidth).ToString("F0", CultureInfo.InvariantCulture),
            $"{Agreement(r, "torch")} / {Agreement(r, "llama")}",
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, cells.Max(c => c[i].Length))).ToArray();
        Console.WriteLine(string.Join("  ", header.Select((h, i) => i < 2 ? h.PadRight(widths[i]) : h.PadLeft(widths[i]))));
        foreach (var c in cells)
            Console.WriteLine(string.Join("  ", c.Select((v, i) => i < 2 ? v.PadRight(widths[i]) : v.PadLeft(widths[i]))));
    }

    static string Format(JsonNode? node, string format) => node is null ? "-" : node.GetValue<double>().ToString(format, CultureInfo.InvariantCulture);

    static Side? RunPeer(Peer peer, int layers, DType dtype, int[] prompt, out string? problem)
    {
        var request = new JsonObject
        {
            ["layers"] = layers, ["dtype"] = dtype == DType.F32 ? "f32" : "bf16", ["threads"] = Environment.ProcessorCount,
            ["prompt"] = new JsonArray(prompt.Select(t => (JsonNode)t).ToArray()), ["decode_tokens"] = DecodeTokens, ["prefill_repeats"] = PrefillRepeats,
        };
        using var document = PeerProcess.Run(peer.Key, request, out problem);
        if (document is null) return null;
        var root = document.RootElement;
        return new Side(PeerProcess.Doubles(root.GetProperty("prefill_seconds")), PeerProcess.Doubles(root.GetProperty("decode_seconds")),
            PeerProcess.Floats(root.GetProperty("logits")), root.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            root.GetProperty("peer").GetString()!, root.TryGetProperty("note", out var note) ? note.GetString() : null);
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
