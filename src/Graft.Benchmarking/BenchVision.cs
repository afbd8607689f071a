using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Graft.Models.Imaging;
using Graft.Models.Vision;
using Graft.Tensors;

namespace Graft.Benchmarking;

/// <summary>
/// `graft bench vision`: images/s of a CLIP ViT-L/14-336-shaped tower (random weights, built in memory) in f32 and
/// bf16, beside the same tower in libtorch in the same dtype (graft-peers torch-vision), its output checked against
/// ours; and JPEG decoding of a 1024x768 photo-like image that tools/bench/jpeg_peer.py writes with PIL, alone and
/// followed by CLIP-336 preprocessing, beside PIL (+ numpy for rescale and normalize).
/// </summary>
internal static class VisionBench
{
    private const int Width = 1024, Heads = 16, Intermediate = 4096, Patch = 14, ImageSize = 336;
    private const int JpegWidth = 1024, JpegHeight = 768, JpegRepeats = 5;
    private static readonly JsonSerializerOptions JsonLine = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private sealed record PilReport(string JpegPath, long JpegBytes, double[] PilDecodeSeconds, double[] PilPreprocessSeconds);

    private sealed record TowerSide(double[] Seconds, float[] Rows, string Name);

    /// <summary>The tower measured: CLIP ViT-L/14-336 with <paramref name="layers"/> encoder layers.</summary>
    internal static VisionTowerConfig Config(int layers) =>
        new(VisionTowerKind.Clip, ImageSize, Patch, 3, Width, Intermediate, layers, Heads, VisionActivation.QuickGelu, 1e-5f);

    /// <summary>The input images, the same on both sides.</summary>
    internal static Tensor Pixels(VisionTowerConfig config, int batch)
    {
        var pixels = Tensor.Zeros(batch, 3, config.ImageSize, config.ImageSize);
        Fill(pixels.Span, new Random(7), 1f);
        return pixels;
    }

    /// <summary>
    /// Largest difference of the last hidden state (first image, first and last token) from the peer's, relative to its
    /// largest element: f32 differs in summation order; the bf16 peer also rounds every activation to bf16.
    /// </summary>
    private static double Tolerance(DType dtype) => dtype == DType.F32 ? 1e-4 : 5e-2;

    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per line per measurement instead of a table." };
        var layers = new Option<int>("--layers") { Description = "Encoder layers (24 for the real shape; fewer for a quick run).", DefaultValueFactory = _ => 24 };
        var batch = new Option<int>("--batch") { Description = "Images per forward pass.", DefaultValueFactory = _ => 1 };
        var repeats = new Option<int>("--repeats") { Description = "Timed forward passes per configuration (after one warm-up).", DefaultValueFactory = _ => 2 };
        var noPeer = new Option<bool>("--no-peer") { Description = "Skip the peers (libtorch, and PIL for the JPEG rows)." };
        var command = new Command("vision", "Vision tower images/s (CLIP ViT-L/14-336 shape, f32 and bf16) vs libtorch, and JPEG decode + CLIP preprocessing vs PIL.");
        foreach (var option in new Option[] { json, layers, batch, repeats, noPeer }) command.Options.Add(option);
        command.SetAction(parseResult => Run(parseResult.GetValue(json), parseResult.GetValue(layers), parseResult.GetValue(batch),
            parseResult.GetValue(repeats), parseResult.GetValue(noPeer)));
        return command;
    }

    private static int Run(bool json, int layers, int batch, int repeats, bool noPeer)
    {
        if (layers <= 0 || batch <= 0 || repeats <= 0)
        {
            Console.Error.WriteLine("--layers, --batch and --repeats must be positive");
            return 2;
        }
        var config = Config(layers);
        string folder = Path.Combine(Path.GetTempPath(), "graft-bench-vision-" + Environment.ProcessId);
        Directory.CreateDirectory(folder);
        try
        {
            var rows = new List<JsonObject>();
            if (json) Console.WriteLine(MachineInfo.Describe().ToJsonString(JsonLine));
            string? peerName = null, peerProblem = noPeer ? "peer skipped (--no-peer)" : null;
            foreach (var dtype in new[] { DType.F32, DType.BF16 })
            {
                // The peer runs first and exits, so its weights and ours are never resident together.
                var peer = noPeer ? null : RunTowerPeer(layers, batch, repeats, dtype, out peerProblem);
                peerName ??= peer?.Name;
                var ours = TimeTower(config, dtype, batch, repeats);
                double seconds = ours.Seconds.Min();
                double imagesPerSecond = batch / seconds;
                double? peerImagesPerSecond = peer is null ? null : batch / peer.Seconds.Min();
                var row = new JsonObject
                {
                    ["what"] = $"ViT-L/14-336 x{layers} layers, {(dtype == DType.F32 ? "f32" : "bf16")}",
                    ["layers"] = layers, ["batch"] = batch, ["dtype"] = dtype == DType.F32 ? "f32" : "bf16",
                    ["images_per_s"] = Round(imagesPerSecond),
                    ["gflops"] = Round(Flops(config) * batch / seconds / 1e9),
                    ["peer_images_per_s"] = peerImagesPerSecond is double t ? Round(t) : null,
                    ["ratio"] = peerImagesPerSecond is double p ? Round(imagesPerSecond / p) : null,
                    ["peer"] = peer?.Name ?? peerProblem,
                    ["load_average"] = MachineInfo.LoadText(),
                };
                if (peer is not null)
                {
                    double max = 0, scale = 1e-30;
                    for (int i = 0; i < Math.Min(ours.Rows.Length, peer.Rows.Length); i++)
                    {
                        max = Math.Max(max, Math.Abs(ours.Rows[i] - peer.Rows[i]));
                        scale = Math.Max(scale, Math.Abs(peer.Rows[i]));
                    }
                    row["relative_difference"] = max / scale;
                    row["tolerance"] = Tolerance(dtype);
                    row["agree"] = ours.Rows.Length == peer.Rows.Length && max / scale <= Tolerance(dtype);
                }
                rows.Add(row);
                if (json) Console.WriteLine(row.ToJsonString(JsonLine));
                GC.Collect();
            }
            var pil = noPeer ? null : RunPilPeer(folder, out var pilProblem);
            if (pil is not null)
            {
                var preprocessor = ImageProcessorConfig.Clip() with { ShortestEdge = ImageSize, CropHeight = ImageSize, CropWidth = ImageSize };
                foreach (bool preprocess in new[] { false, true })
                {
                    double ours = Median(TimeDecode(pil.JpegPath, preprocess ? preprocessor : null));
                    double peerSeconds = Median(preprocess ? pil.PilPreprocessSeconds : pil.PilDecodeSeconds);
                    rows.Add(new JsonObject
                    {
                        ["what"] = $"JPEG {JpegWidth}x{JpegHeight} decode" + (preprocess ? $" + CLIP-{ImageSize} preprocess" : ""), ["bytes"] = pil.JpegBytes,
                        ["ours_ms"] = Round(ours * 1e3), ["peer_ms"] = Round(peerSeconds * 1e3), ["ratio"] = Round(peerSeconds / ours),
                        ["peer"] = preprocess ? "PIL + numpy" : "PIL",
                        ["load_average"] = MachineInfo.LoadText(),
                    });
                    if (json) Console.WriteLine(rows[^1].ToJsonString(JsonLine));
                }
            }
            if (!json) PrintTable(rows, peerName, peerProblem, config, batch);
            return 0;
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static void PrintTable(List<JsonObject> rows, string? peerName, string? peerProblem, VisionTowerConfig config, int batch)
    {
        Console.WriteLine($"graft bench vision: CLIP ViT-L/14-336 shape ({config.Layers} layers, width {Width}, {Heads} heads, {config.Patches + 1} tokens), batch {batch}, "
            + $"{Environment.ProcessorCount} threads, {Flops(config) / 1e9:F1} GFLOP per image; best forward of each side");
        Console.WriteLine(MachineInfo.Line());
        Console.WriteLine(peerName is not null ? $"Peer: {peerName} (each dtype against the peer in the same dtype)." : $"Peer: none ({peerProblem}).");
        Console.WriteLine("ratio > 1 means ours is faster.");
        Console.WriteLine($"Load average at the end: {MachineInfo.LoadText()}");
        Console.WriteLine();
        foreach (var row in rows)
        {
            if (row.ContainsKey("images_per_s"))
                Console.WriteLine($"{(string)row["what"]!,-44} {Format(row["images_per_s"]),8} img/s  {Format(row["gflops"]),7} GFLOP/s  peer {Format(row["peer_images_per_s"]),8} img/s  ratio {Format(row["ratio"])}"
                    + (row["relative_difference"] is { } d ? $"  output vs peer {d.GetValue<double>():0.0e+0} (tol {row["tolerance"]!.GetValue<double>():0e+0})" : ""));
            else
                Console.WriteLine($"{(string)row["what"]!,-44} ours {Format(row["ours_ms"]),8} ms  {(string)row["peer"]!} {Format(row["peer_ms"])} ms  ratio {Format(row["ratio"])}");
        }
    }

    /// <summary>Seconds per forward pass of a random tower with its matrices stored as <paramref name="dtype"/>.</summary>
    private static TowerSide TimeTower(VisionTowerConfig config, DType dtype, int batch, int repeats)
    {
        using var model = RandomClip(config, dtype);
        var pixels = Pixels(config, batch);
        using var _ = Autograd.NoGrad();
        var last = model.Forward(pixels, keepHiddenStates: false).LastHiddenState;
        int tokens = last.Shape[1];
        var rows = new float[2 * config.Width];
        last.Span.Slice(0, config.Width).CopyTo(rows);
        last.Span.Slice((tokens - 1) * config.Width, config.Width).CopyTo(rows.AsSpan(config.Width));
        var seconds = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            var watch = Stopwatch.StartNew();
            model.Forward(pixels, keepHiddenStates: false);
            seconds[i] = watch.Elapsed.TotalSeconds;
        }
        return new TowerSide(seconds, rows, "Graft");
    }

    /// <summary>Seconds to decode the file, and to turn it into a [3, S, S] tensor when a preprocessor is given.</summary>
    private static double[] TimeDecode(string path, ImageProcessorConfig? preprocessor)
    {
        void Run()
        {
            var image = ImageDecoder.Load(path);
            if (preprocessor is not null) ImagePreprocessor.ToTensor(image, preprocessor);
        }
        Run();
        var seconds = new double[JpegRepeats];
        for (int i = 0; i < seconds.Length; i++)
        {
            var watch = Stopwatch.StartNew();
            Run();
            seconds[i] = watch.Elapsed.TotalSeconds;
        }
        return seconds;
    }

    /// <summary>A CLIP tower with random weights; matrices in <paramref name="dtype"/>, vectors in F32 (as a loaded checkpoint has them).</summary>
    internal static ClipVisionModel RandomClip(VisionTowerConfig c, DType dtype)
    {
        var random = new Random(1);
        var parameters = new List<Tensor>();
        Tensor Matrix(params int[] shape)
        {
            var t = Tensor.Zeros(shape);
            Fill(t.Span, random, 1f / MathF.Sqrt(shape[^1]));
            var stored = dtype == DType.F32 ? t : t.ToDType(dtype);
            parameters.Add(stored);
            return stored;
        }
        Tensor Vector(float value, params int[] shape)
        {
            var t = Tensor.Full(value, shape);
            parameters.Add(t);
            return t;
        }
        LinearWeights Linear(int n, int k) => new(Matrix(n, k), Vector(0f, n));
        LayerNormWeights Norm() => new(Vector(1f, c.Width), Vector(0f, c.Width), c.LayerNormEps);
        var blocks = new VisionEncoderBlock[c.Layers];
        for (int i = 0; i < blocks.Length; i++)
            blocks[i] = new VisionEncoderBlock(i, c.Heads, c.Activation, Norm(), Linear(c.Width, c.Width), Linear(c.Width, c.Width),
                Linear(c.Width, c.Width), Linear(c.Width, c.Width), Norm(), Linear(c.IntermediateSize, c.Width), Linear(c.Width, c.IntermediateSize));
        var patch = Matrix(c.Width, c.Channels, c.PatchSize, c.PatchSize);
        var cls = Vector(0.1f, 1, 1, c.Width);
        var positions = Vector(0.01f, 1 + c.Patches, c.Width);
        return new ClipVisionModel(c, patch, cls, positions, Norm(), blocks, Norm(), parameters);
    }

    private static void Fill(Span<float> values, Random random, float scale)
    {
        for (int i = 0; i < values.Length; i++) values[i] = scale * (float)(random.NextDouble() * 2 - 1);
    }

    /// <summary>Multiply-adds x2 of one image's forward: projections, MLP, attention scores and mixing, patch embedding.</summary>
    private static double Flops(VisionTowerConfig c)
    {
        double t = c.Patches + 1, w = c.Width;
        double perLayer = 2 * t * w * w * 4 + 2 * t * w * c.IntermediateSize * 2 + 2 * 2 * t * t * w;
        return c.Layers * perLayer + 2.0 * c.Patches * w * c.Channels * c.PatchSize * c.PatchSize;
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }

    private static double Round(double value) => Math.Round(value, 3);

    private static string Format(JsonNode? node) => node is null ? "-" : node.GetValue<double>().ToString("F2", CultureInfo.InvariantCulture);

    private static TowerSide? RunTowerPeer(int layers, int batch, int repeats, DType dtype, out string? problem)
    {
        var request = new JsonObject
        {
            ["layers"] = layers, ["batch"] = batch, ["repeats"] = repeats, ["dtype"] = dtype == DType.F32 ? "f32" : "bf16",
            ["threads"] = Environment.ProcessorCount,
        };
        using var document = PeerProcess.Run("torch-vision", request, out problem);
        if (document is null) return null;
        var root = document.RootElement;
        return new TowerSide(PeerProcess.Doubles(root.GetProperty("seconds")), PeerProcess.Floats(root.GetProperty("rows")), root.GetProperty("peer").GetString()!);
    }

    /// <summary>Runs tools/bench/jpeg_peer.py (PIL) under /usr/bin/python3; null (with the reason) when it cannot.</summary>
    private static PilReport? RunPilPeer(string folder, out string? problem)
    {
        var request = new JsonObject
        {
            ["image"] = ImageSize,
            ["jpeg"] = new JsonObject { ["folder"] = folder, ["width"] = JpegWidth, ["height"] = JpegHeight, ["repeats"] = JpegRepeats },
        };
        using var document = PythonPeer.Run("jpeg_peer.py", request, "PIL", out problem);
        if (document is null) return null;
        var jpeg = document.RootElement.GetProperty("jpeg");
        static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();
        return new PilReport(jpeg.GetProperty("path").GetString()!, jpeg.GetProperty("bytes").GetInt64(),
            Doubles(jpeg.GetProperty("decode_seconds")), Doubles(jpeg.GetProperty("decode_preprocess_seconds")));
    }
}
