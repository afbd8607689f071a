using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Graft.Tensors;
using Graft.Tensors.Kernels;

namespace Graft.Benchmarking;

/// <summary>`graft bench &lt;what&gt;`: engine benchmarks timed against a peer in the same run. One subcommand per benchmark.</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Command("bench", "Time engine kernels against a peer implementation in the same run.");
        bench.Subcommands.Add(GemmBench.Create());
        bench.Subcommands.Add(VisionBench.Create());
        bench.Subcommands.Add(JpegBench.Create());
        bench.Subcommands.Add(DecodeBench.Create());
        bench.Subcommands.Add(BatchBench.Create());
        bench.Subcommands.Add(TrainBench.Create());
        bench.Subcommands.Add(ServeBench.Create());
        return bench;
    }

    /// <summary>
    /// A benchmark on a Qwen2-0.5B-shaped decoder: --json, --layers (24 by default, checked positive), --no-peer and
    /// --rounds (peer and ours measured alternately, this many times each), handed to <paramref name="run"/>.
    /// </summary>
    internal static Command QwenShapedCommand(string name, string description, Func<BenchOptions, int> run)
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per line per measurement instead of a table." };
        var layers = new Option<int>("--layers") { Description = "Decoder layers (Qwen2-0.5B has 24); fewer for a quicker run.", DefaultValueFactory = _ => 24 };
        var noPeer = new Option<bool>("--no-peer") { Description = "Skip the peers." };
        var rounds = new Option<int>("--rounds") { Description = "Alternate peer and ours this many times; the best of each side is compared.", DefaultValueFactory = _ => 2 };
        var command = new Command(name, description);
        command.Options.Add(json);
        command.Options.Add(layers);
        command.Options.Add(noPeer);
        command.Options.Add(rounds);
        command.SetAction(parseResult =>
        {
            var options = new BenchOptions(parseResult.GetValue(json), parseResult.GetValue(layers), parseResult.GetValue(noPeer), parseResult.GetValue(rounds));
            if (options.Layers > 0 && options.Rounds > 0) return run(options);
            Console.Error.WriteLine($"--layers and --rounds must be positive, got {options.Layers} and {options.Rounds}");
            return 2;
        });
        return command;
    }
}

/// <summary>What every Qwen2-shaped benchmark is asked: JSON lines or a table, decoder depth, peers or not, rounds of peer-then-ours.</summary>
internal sealed record BenchOptions(bool Json, int Layers, bool NoPeer, int Rounds);

/// <summary>
/// `graft bench gemm`: our matrix products against numpy (its BLAS) on square and LLM shapes, plus the
/// machine's memory read bandwidth so matrix-vector products can be judged against their bound.
/// </summary>
internal static class GemmBench
{
    const long BandwidthBytes = 1L << 30;
    const double SecondsPerShape = 1.0;

    /// <summary>C[M,N] = op(A)[M,K] · op(B)[K,N]; Half means B stored as BF16 (the peer still runs f32).</summary>
    sealed record Shape(string Name, int M, int N, int K, bool TransA, bool TransB, bool Half)
    {
        public bool IsMatVec => M == 1;
        public double Flops => 2.0 * M * N * K;
        public long WeightBytes => (long)N * K * (Half ? 2 : 4);
    }

    static readonly Shape[] Shapes =
    [
        new("square 256", 256, 256, 256, false, false, false),
        new("square 512", 512, 512, 512, false, false, false),
        new("square 1024", 1024, 1024, 1024, false, false, false),
        new("square 2048", 2048, 2048, 2048, false, false, false),
        new("linear x[512,896]·W[896,896]ᵀ", 512, 896, 896, false, true, false),
        new("linear x[512,896]·W[128,896]ᵀ", 512, 128, 896, false, true, false),
        new("linear x[512,896]·W[4864,896]ᵀ", 512, 4864, 896, false, true, false),
        new("linear x[512,4864]·W[896,4864]ᵀ", 512, 896, 4864, false, true, false),
        new("head x[512,896]·W[151936,896]ᵀ", 512, 151936, 896, false, true, false),
        new("linear x[512,896]·W[4864,896]ᵀ bf16", 512, 4864, 896, false, true, true),
        new("linear x[257,1024]·W[4096,1024]ᵀ f32", 257, 4096, 1024, false, true, false),
        new("linear x[257,1024]·W[4096,1024]ᵀ bf16", 257, 4096, 1024, false, true, true),
        new("wgrad dY[512,4864]ᵀ·X[512,896]", 4864, 896, 512, true, false, false),
        new("matvec x[1,896]·W[4864,896]ᵀ f32", 1, 4864, 896, false, true, false),
        new("matvec x[1,896]·W[4864,896]ᵀ bf16", 1, 4864, 896, false, true, true),
        new("matvec x[1,4864]·W[896,4864]ᵀ f32", 1, 896, 4864, false, true, false),
        new("matvec x[1,4864]·W[896,4864]ᵀ bf16", 1, 896, 4864, false, true, true),
        new("matvec x[1,896]·W[151936,896]ᵀ f32", 1, 151936, 896, false, true, false),
        new("matvec x[1,896]·W[151936,896]ᵀ bf16", 1, 151936, 896, false, true, true),
    ];

    sealed record PeerReport(string NumpyVersion, string BlasKind, string BlasLibraries, string? Core, double? BandwidthGbps,
        Dictionary<string, (double Median, double Fastest, float[] Rows)> Seconds);

    /// <summary>
    /// Largest difference from the peer's C allowed, relative to C's largest element: both sum k products of float32
    /// in other orders (≈ k·2⁻²⁴ at worst, far less in practice); a bf16 B rounds each weight by up to 2⁻⁹.
    /// </summary>
    static double Tolerance(Shape shape) => shape.Half ? 1e-2 : 1e-5;

    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per line per shape instead of a table." };
        var noPeer = new Option<bool>("--no-peer") { Description = "Skip the numpy peer run." };
        var command = new Command("gemm", "Matrix multiply throughput vs numpy/OpenBLAS, and matrix-vector weight streaming vs memory bandwidth.");
        command.Options.Add(json);
        command.Options.Add(noPeer);
        command.SetAction(parseResult => Run(parseResult.GetValue(json), parseResult.GetValue(noPeer)));
        return command;
    }

    static int Run(bool json, bool noPeer)
    {
        // The peer runs first and exits, so its arrays and ours are never resident together.
        string? peerProblem = null;
        PeerReport? peer = null;
        if (noPeer) peerProblem = "peer skipped (--no-peer)";
        else peer = RunPeer(out peerProblem);

        double bandwidth = MeasureReadBandwidth();
        var rows = new List<JsonObject>();
        if (json) Console.WriteLine(MachineInfo.Describe().ToJsonString());
        foreach (var shape in Shapes)
        {
            var (seconds, fastest, ourRows) = TimeOurs(shape);
            double ours = shape.Flops / seconds / 1e9, oursBest = shape.Flops / fastest / 1e9;
            bool peerRan = peer is not null && peer.Seconds.ContainsKey(shape.Name);
            double? peerGflops = peerRan ? shape.Flops / peer!.Seconds[shape.Name].Median / 1e9 : null;
            double? peerBest = peerRan ? shape.Flops / peer!.Seconds[shape.Name].Fastest / 1e9 : null;
            var row = new JsonObject
            {
                ["shape"] = shape.Name,
                ["m"] = shape.M, ["n"] = shape.N, ["k"] = shape.K,
                ["ours_gflops"] = Round(ours),
                ["peer_gflops"] = peerGflops is null ? null : Round(peerGflops.Value),
                ["ratio"] = peerGflops is null ? null : Round(ours / peerGflops.Value),
                ["ours_best_gflops"] = Round(oursBest),
                ["peer_best_gflops"] = peerBest is null ? null : Round(peerBest.Value),
                ["best_ratio"] = peerBest is null ? null : Round(oursBest / peerBest.Value),
                ["blas"] = peer?.BlasKind,
                ["ours_seconds"] = seconds,
                ["bandwidth_gbps"] = Round(bandwidth),
                ["peer_bandwidth_gbps"] = peer?.BandwidthGbps is double pb ? Round(pb) : null,
                ["blas_core"] = peer?.Core,
                ["load_average"] = MachineInfo.LoadText(),
            };
            if (peerRan)
            {
                var peerRows = peer!.Seconds[shape.Name].Rows;
                double max = 0, scale = 1e-30;
                for (int i = 0; i < ourRows.Length; i++)
                {
                    max = Math.Max(max, Math.Abs(ourRows[i] - peerRows[i]));
                    scale = Math.Max(scale, Math.Abs(peerRows[i]));
                }
                row["relative_difference"] = max / scale;
                row["tolerance"] = Tolerance(shape);
                row["agree"] = peerRows.Length == ourRows.Length && max / scale <= Tolerance(shape);
            }
            if (shape.IsMatVec)
            {
                double gbps = shape.WeightBytes / seconds / 1e9;
                row["gbps"] = Round(gbps);
                row["bandwidth_percent"] = Round(100 * gbps / bandwidth);
            }
            if (shape.Half) row["peer_note"] = "peer is numpy f32 (numpy has no bf16)";
            rows.Add(row);
            if (json) Console.WriteLine(row.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        }
        if (!json) PrintTable(rows, peer, peerProblem, bandwidth);
        return 0;
    }

    static double Round(double value) => Math.Round(value, 3);

    static void PrintTable(List<JsonObject> rows, PeerReport? peer, string? peerProblem, double bandwidth)
    {
        Console.WriteLine($"graft bench gemm: {Environment.ProcessorCount} threads, AVX-512 kernels {(System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? "on" : "off (Vector256 fallback)")}");
        Console.WriteLine(MachineInfo.Line());
        if (peer is null) Console.WriteLine($"Peer: none ({peerProblem}); peer columns are empty.");
        else
        {
            Console.WriteLine($"Peer: numpy {peer.NumpyVersion}, BLAS loaded at run time: {peer.BlasKind} ({peer.BlasLibraries}), kernel (openblas_get_corename): {peer.Core ?? "unknown"}");
            if (peer.BlasKind == "reference")
                Console.WriteLine("WARNING: numpy is running the REFERENCE BLAS (netlib). It is many times slower than OpenBLAS: RATIOS ARE MEANINGLESS.");
            if (peer.Core is { } core && System.Runtime.Intrinsics.X86.Avx512F.IsSupported && !core.Contains("Skylake", StringComparison.OrdinalIgnoreCase)
                && !core.Contains("Cooperlake", StringComparison.OrdinalIgnoreCase) && !core.Contains("SapphireRapids", StringComparison.OrdinalIgnoreCase))
                Console.WriteLine($"WARNING: OpenBLAS runs its {core} kernels on an AVX-512 CPU: RATIOS FLATTER US.");
            Console.WriteLine($"C agrees with the peer's (rows 0, m/2, m-1) within the stated tolerance for {rows.Count(r => r["agree"]?.GetValue<bool>() == true)} of {rows.Count(r => r["agree"] is not null)} shapes"
                + $" (largest relative difference {rows.Where(r => r["relative_difference"] is not null).Select(r => r["relative_difference"]!.GetValue<double>()).DefaultIfEmpty(0).Max():0.0e+0}).");
        }
        Console.WriteLine($"Load average at the end: {MachineInfo.LoadText()}");
        Console.WriteLine($"Memory read bandwidth (sum of 1 GiB, {Environment.ProcessorCount} threads): ours {bandwidth:F1} GB/s"
            + (peer?.BandwidthGbps is double pb ? $", numpy {pb:F1} GB/s" : ""));
        Console.WriteLine("bf16 rows: B is read as bf16 by us; the peer is numpy f32 (numpy has no bf16).");
        Console.WriteLine("Matrix-vector weights that fit in the last-level cache stay there across repeats (% of bw can pass 100);");
        Console.WriteLine("the 151936-row shapes are the ones that measure streaming from DRAM.");
        Console.WriteLine("GFLOP/s and ratio from median times; 'best ratio' compares the fastest repeat of each side,");
        Console.WriteLine("which is steadier when neighbours share the cores.");
        Console.WriteLine();
        string[] header = ["shape", "ours GFLOP/s", "peer GFLOP/s", "ratio", "best ratio", "ours GB/s", "% of bw", "C vs peer"];
        var cells = rows.Select(r => new[]
        {
            (string)r["shape"]!,
            Format(r["ours_gflops"]), Format(r["peer_gflops"]), Format(r["ratio"]), Format(r["best_ratio"]),
            Format(r["gbps"]), Format(r["bandwidth_percent"]),
            r["relative_difference"] is { } d ? $"{d.GetValue<double>():0.0e+0}" : "-",
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, cells.Max(c => c[i].Length))).ToArray();
        Console.WriteLine(string.Join("  ", header.Select((h, i) => i == 0 ? h.PadRight(widths[i]) : h.PadLeft(widths[i]))));
        foreach (var c in cells)
            Console.WriteLine(string.Join("  ", c.Select((v, i) => i == 0 ? v.PadRight(widths[i]) : v.PadLeft(widths[i]))));
    }

    static string Format(JsonNode? node) => node is null ? "-" : node.GetValue<double>().ToString("F1", CultureInfo.InvariantCulture);

    /// <summary>Values in [-0.5, 0.5) from the element's index in storage order, as tools/bench/gemm_peer.py's pattern() makes them.</summary>
    static float Pattern(long index, int salt) => (float)((index * 7919 + salt * 104729L) % 2003 / 2003.0 - 0.5);

    /// <summary>Median and fastest seconds of our product over repeats, and C's rows 0, m/2 and m-1.</summary>
    static (double Median, double Fastest, float[] Rows) TimeOurs(Shape shape)
    {
        int aLength = shape.M * shape.K, bLength = shape.N * shape.K, cLength = shape.M * shape.N;
        var a = new float[aLength];
        for (int i = 0; i < aLength; i++) a[i] = Pattern(i, 1);
        var c = new float[cLength];
        int lda = shape.TransA ? shape.M : shape.K, ldb = shape.TransB ? shape.K : shape.N;
        Action run;
        if (shape.Half)
        {
            var b = new ushort[bLength];
            for (int i = 0; i < bLength; i++) b[i] = HalfConvert.FloatToBf16(Pattern(i, 2));
            run = () => Gemm.MultiplyHalf(DType.BF16, shape.TransB, shape.M, shape.N, shape.K, a, lda, b, ldb, c, shape.N);
        }
        else
        {
            var b = new float[bLength];
            for (int i = 0; i < bLength; i++) b[i] = Pattern(i, 2);
            run = () => Gemm.Multiply(shape.TransA, shape.TransB, shape.M, shape.N, shape.K, a, lda, b, ldb, c, shape.N);
        }
        var (median, fastest) = TimeRepeats(run);
        var rows = new float[3 * shape.N];
        int[] which = [0, shape.M / 2, shape.M - 1];
        for (int r = 0; r < 3; r++) Array.Copy(c, (long)which[r] * shape.N, rows, (long)r * shape.N, shape.N);
        return (median, fastest, rows);
    }

    /// <summary>Median and fastest of the repeats, after a warm-up that also lets tiered JIT settle.</summary>
    static (double Median, double Fastest) TimeRepeats(Action run)
    {
        for (int i = 0; i < 3; i++) run();
        var watch = Stopwatch.StartNew();
        run();
        double first = watch.Elapsed.TotalSeconds;
        int repeats = Math.Clamp((int)(SecondsPerShape / Math.Max(first, 1e-9)), 3, 15);
        var times = new List<double> { first };
        for (int i = 1; i < repeats; i++)
        {
            watch.Restart();
            run();
            times.Add(watch.Elapsed.TotalSeconds);
        }
        times.Sort();
        return (times[times.Count / 2], times[0]);
    }

    /// <summary>GB/s reading 1 GiB of floats, summed by every core at once (the ceiling for weight streaming).</summary>
    internal static unsafe double MeasureReadBandwidth()
    {
        long count = BandwidthBytes / sizeof(float);
        float* data = (float*)NativeMemory.AlignedAlloc((nuint)BandwidthBytes, 64);
        try
        {
            new Span<float>(data, (int)count).Fill(1f);
            int threads = Environment.ProcessorCount;
            nint address = (nint)data;
            var partial = new float[threads];
            // The fastest pass, not the median: this is a ceiling, and neighbours on a shared machine only lower it.
            double seconds = TimeRepeats(() => Parallel.For(0, threads, t =>
            {
                long start = count * t / threads, end = count * (t + 1) / threads;
                partial[t] = SumRange((float*)address + start, end - start);
            })).Fastest;
            return BandwidthBytes / seconds / 1e9;
        }
        finally
        {
            NativeMemory.AlignedFree(data);
        }
    }

    static unsafe float SumRange(float* data, long count)
    {
        Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
        long i = 0;
        for (; i + 32 <= count; i += 32)
        {
            s0 += Vector256.Load(data + i);
            s1 += Vector256.Load(data + i + 8);
            s2 += Vector256.Load(data + i + 16);
            s3 += Vector256.Load(data + i + 24);
        }
        float sum = Vector256.Sum(s0 + s1 + s2 + s3);
        for (; i < count; i++) sum += data[i];
        return sum;
    }

    /// <summary>Runs tools/bench/gemm_peer.py under /usr/bin/python3; null (with the reason) when it cannot.</summary>
    static PeerReport? RunPeer(out string? problem)
    {
        var request = new JsonObject
        {
            ["shapes"] = new JsonArray(Shapes.Select(s => (JsonNode)new JsonObject
            {
                ["name"] = s.Name, ["m"] = s.M, ["n"] = s.N, ["k"] = s.K, ["trans_a"] = s.TransA, ["trans_b"] = s.TransB,
            }).ToArray()),
            ["bandwidth_bytes"] = BandwidthBytes,
            ["seconds_per_shape"] = SecondsPerShape,
        };
        // OpenBLAS as it runs at its best here: no OPENBLAS_* tuning inherited from the shell (a forced Haswell core or a
        // small OPENBLAS_L2_SIZE would flatter us), its threads as many as ours, and, since Debian's 0.3.21 does not
        // recognise newer AVX-512 CPUs and would fall back to SSE3 kernels, its AVX-512 kernel named on such CPUs.
        var environment = System.Environment.GetEnvironmentVariables().Keys.Cast<string>()
            .Where(name => name.StartsWith("OPENBLAS_", StringComparison.Ordinal)).ToDictionary(name => name, _ => "");
        environment["OPENBLAS_NUM_THREADS"] = Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture);
        if (System.Runtime.Intrinsics.X86.Avx512F.IsSupported) environment["OPENBLAS_CORETYPE"] = "SkylakeX";
        using var document = PythonPeer.Run("gemm_peer.py", request, "numpy", out problem, environment);
        if (document is null) return null;
        var root = document.RootElement;
        var seconds = root.GetProperty("results").EnumerateArray()
            .ToDictionary(r => r.GetProperty("name").GetString()!,
                r => (r.GetProperty("seconds").GetDouble(), r.GetProperty("best_seconds").GetDouble(), PeerProcess.Floats(r.GetProperty("rows"))));
        var blas = root.GetProperty("blas");
        double? peerBandwidth = root.GetProperty("bandwidth_gbps").ValueKind == JsonValueKind.Number ? root.GetProperty("bandwidth_gbps").GetDouble() : null;
        return new PeerReport(root.GetProperty("numpy").GetString()!, blas.GetProperty("kind").GetString()!,
            string.Join(", ", blas.GetProperty("libraries").EnumerateArray().Select(l => l.GetString())),
            blas.GetProperty("core").ValueKind == JsonValueKind.String ? blas.GetProperty("core").GetString() : null, peerBandwidth, seconds);
    }
}
