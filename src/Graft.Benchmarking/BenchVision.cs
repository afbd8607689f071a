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
/// bf16, beside the same shapes in PyTorch (eager, no_grad, 2 threads; tools/bench/vision_peer.py), and JPEG
/// decoding of a 1024x768 photo-like image that the peer writes with PIL, alone and followed by CLIP-336 preprocessing,
/// beside PIL (+ numpy for rescale and normalize).
/// </summary>
internal static class VisionBench
{
    private const int Width = 1024, Heads = 16, Intermediate = 4096, Patch = 14, ImageSize = 336, PeerThreads = 2;
    private const int JpegWidth = 1024, JpegHeight = 768, JpegRepeats = 5;
    private static readonly JsonSerializerOptions JsonLine = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private sealed record PeerReport(string? TorchVersion, string? TorchProblem, double[] VitSeconds, string JpegPath, long JpegBytes,
        double[] PilDecodeSeconds, double[] PilPreprocessSeconds);

    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per line per measurement instead of a table." };
        var layers = new Option<int>("--layers") { Description = "Encoder layers (24 for the real shape; fewer for a quick run).", DefaultValueFactory = _ => 24 };
        var batch = new Option<int>("--batch") { Description = "Images per forward pass.", DefaultValueFactory = _ => 1 };
        var repeats = new Option<int>("--repeats") { Description = "Timed forward passes per configuration (after one warm-up).", DefaultValueFactory = _ => 2 };
        var noPeer = new Option<bool>("--no-peer") { Description = "Skip the PyTorch/PIL peer (and so the JPEG rows)." };
        var command = new Command("vision", "Vision tower images/s (CLIP ViT-L/14-336 shape, f32 and bf16) vs PyTorch, and JPEG decode + CLIP preprocessing vs PIL.");
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
        var config = new VisionTowerConfig(VisionTowerKind.Clip, ImageSize, Patch, 3, Width, Intermediate, layers, Heads, VisionActivation.QuickGelu, 1e-5f);
        string folder = Path.Combine(Path.GetTempPath(), "graft-bench-vision-" + Environment.ProcessId);
        Directory.CreateDirectory(folder);
        try
        {
            // The peer runs first and exits, so its weights and ours are never resident together.
            string? peerProblem = "peer skipped (--no-peer)";
            var peer = noPeer ? null : RunPeer(config, batch, repeats, folder, out peerProblem);
            var rows = new List<JsonObject>();
            double? torchImagesPerSecond = peer is { VitSeconds.Length: > 0 } ? batch / Median(peer.VitSeconds) : null;
            foreach (var dtype in new[] { DType.F32, DType.BF16 })
            {
                double seconds = Median(TimeTower(config, dtype, batch, repeats));
                double imagesPerSecond = batch / seconds;
                rows.Add(new JsonObject
                {
                    ["what"] = $"ViT-L/14-336 x{layers} layers, ours {dtype}",
                    ["layers"] = layers, ["batch"] = batch, ["dtype"] = dtype.ToString(),
                    ["images_per_s"] = Round(imagesPerSecond),
                    ["gflops"] = Round(Flops(config) * batch / seconds / 1e9),
                    ["peer_images_per_s"] = torchImagesPerSecond is double t ? Round(t) : null,
                    ["ratio"] = torchImagesPerSecond is double p ? Round(imagesPerSecond / p) : null,
                    ["peer"] = peer?.TorchVersion is string v ? $"torch {v} f32, {PeerThreads} threads" : peer?.TorchProblem ?? peerProblem,
                });
                if (json) Console.WriteLine(rows[^1].ToJsonString(JsonLine));
            }
            if (peer is not null)
            {
                var preprocessor = ImageProcessorConfig.Clip() with { ShortestEdge = ImageSize, CropHeight = ImageSize, CropWidth = ImageSize };
                foreach (bool preprocess in new[] { false, true })
                {
                    double ours = Median(TimeDecode(peer.JpegPath, preprocess ? preprocessor : null));
                    double pil = Median(preprocess ? peer.PilPreprocessSeconds : peer.PilDecodeSeconds);
                    rows.Add(new JsonObject
                    {
                        ["what"] = $"JPEG {JpegWidth}x{JpegHeight} decode" + (preprocess ? $" + CLIP-{ImageSize} preprocess" : ""), ["bytes"] = peer.JpegBytes,
                        ["ours_ms"] = Round(ours * 1e3), ["peer_ms"] = Round(pil * 1e3), ["ratio"] = Round(pil / ours),
                        ["peer"] = preprocess ? "PIL + numpy" : "PIL",
                    });
                    if (json) Console.WriteLine(rows[^1].ToJsonString(JsonLine));
                }
            }
            if (!json) PrintTable(rows, peer, peerProblem, config, batch);
            return 0;
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static void PrintTable(List<JsonObject> rows, PeerReport? peer, string? peerProblem, VisionTowerConfig config, int batch)
    {
        Console.WriteLine($"graft bench vision: CLIP ViT-L/14-336 shape ({config.Layers} layers, width {Width}, {Heads} heads, {config.Patches + 1} tokens), batch {batch}, "
            + $"{Environment.ProcessorCount} threads (ours), {Flops(config) / 1e9:F1} GFLOP per image");
        Console.WriteLine(peer?.TorchVersion is string v ? $"Peer: PyTorch {v}, eager, no_grad, f32, {PeerThreads} threads (it has no fast bf16 on this CPU; bf16 rows compare against its f32)."
            : $"Peer: none ({peer?.TorchProblem ?? peerProblem}).");
        Console.WriteLine("ratio > 1 means ours is faster.");
        Console.WriteLine();
        foreach (var row in rows)
        {
            if (row.ContainsKey("images_per_s"))
                Console.WriteLine($"{(string)row["what"]!,-44} {Format(row["images_per_s"]),8} img/s  {Format(row["gflops"]),7} GFLOP/s  peer {Format(row["peer_images_per_s"]),8} img/s  ratio {Format(row["ratio"])}");
            else
                Console.WriteLine($"{(string)row["what"]!,-44} ours {Format(row["ours_ms"]),8} ms  {(string)row["peer"]!} {Format(row["peer_ms"])} ms  ratio {Format(row["ratio"])}");
        }
    }

    /// <summary>Seconds per forward pass of a random tower with its matrices stored as <paramref name="dtype"/>.</summary>
    private static double[] TimeTower(VisionTowerConfig config, DType dtype, int batch, int repeats)
    {
        using var model = RandomClip(config, dtype);
        var pixels = Tensor.Zeros(batch, 3, config.ImageSize, config.ImageSize);
        Fill(pixels.Span, new Random(7), 1f);
        using var _ = Autograd.NoGrad();
        model.Forward(pixels, keepHiddenStates: false);
        var seconds = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            var watch = Stopwatch.StartNew();
            model.Forward(pixels, keepHiddenStates: false);
            seconds[i] = watch.Elapsed.TotalSeconds;
        }
        return seconds;
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
    private static ClipVisionModel RandomClip(VisionTowerConfig c, DType dtype)
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

    /// <summary>Runs tools/bench/vision_peer.py under /usr/bin/python3; null (with the reason) when it cannot.</summary>
    private static PeerReport? RunPeer(VisionTowerConfig c, int batch, int repeats, string folder, out string? problem)
    {
        var request = new JsonObject
        {
            ["layers"] = c.Layers, ["width"] = c.Width, ["heads"] = c.Heads, ["intermediate"] = c.IntermediateSize, ["patch"] = c.PatchSize,
            ["image"] = c.ImageSize, ["batch"] = batch, ["repeats"] = repeats, ["threads"] = PeerThreads,
            ["jpeg"] = new JsonObject { ["folder"] = folder, ["width"] = JpegWidth, ["height"] = JpegHeight, ["repeats"] = JpegRepeats },
        };
        using var document = PythonPeer.Run("vision_peer.py", request, "torch", out problem);
        if (document is null) return null;
        var root = document.RootElement;
        var jpeg = root.GetProperty("jpeg");
        static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();
        return new PeerReport(root.GetProperty("torch").GetString(), root.GetProperty("torch_problem").GetString(), Doubles(root.GetProperty("vit_seconds")),
            jpeg.GetProperty("path").GetString()!, jpeg.GetProperty("bytes").GetInt64(),
            Doubles(jpeg.GetProperty("decode_seconds")), Doubles(jpeg.GetProperty("decode_preprocess_seconds")));
    }
}
