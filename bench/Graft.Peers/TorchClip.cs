using System.Diagnostics;
using System.Text.Json.Nodes;
using Graft.Benchmarking;
using Graft.Models.Vision;
using Graft.Tensors;
using TorchSharp;
using static TorchSharp.torch.nn.functional;
using TT = TorchSharp.torch.Tensor;

namespace Graft.Peers;

/// <summary>
/// A CLIP ViT in libtorch ops as transformers' CLIPVisionModel computes it: patch convolution, class token, positions,
/// pre-LayerNorm, blocks of LayerNorm → attention (scaled_dot_product_attention) → residual → LayerNorm → fc1 →
/// quick GELU → fc2 → residual. The bench's random tower (<see cref="VisionBench.RandomClip"/>), in f32 or all-bf16.
/// </summary>
static class TorchClip
{
    sealed record Block(TT Ln1W, TT Ln1B, TT Qw, TT Qb, TT Kw, TT Kb, TT Vw, TT Vb, TT Ow, TT Ob, TT Ln2W, TT Ln2B, TT F1w, TT F1b, TT F2w, TT F2b);

    /// <summary>
    /// torch-vision: {layers, batch, repeats, dtype, threads} -> {peer, threads, seconds: [..] per forward, rows: base64 f32
    /// of the last hidden state's first and last token of the first image}.
    /// </summary>
    public static JsonObject Run(JsonObject request)
    {
        int threads = (int)request["threads"]!;
        torch.set_num_threads(threads);
        int layers = (int)request["layers"]!, batch = (int)request["batch"]!, repeats = (int)request["repeats"]!;
        string dtypeName = (string)request["dtype"]!;
        var dtype = dtypeName == "bf16" ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32;
        var config = VisionBench.Config(layers);
        TT Convert(Tensor t) => TorchDecoder.ToTorch(t, dtype);
        TT patch, cls, positions, preW, preB;
        Block[] blocks;
        using (var model = VisionBench.RandomClip(config, dtypeName == "bf16" ? DType.BF16 : DType.F32))
        {
            patch = Convert(model.PatchWeight);
            cls = Convert(model.ClassEmbedding).reshape(1, 1, config.Width);
            positions = Convert(model.PositionEmbedding).reshape(1, -1, config.Width);
            (preW, preB) = (Convert(model.PreNorm.Weight), Convert(model.PreNorm.Bias));
            blocks = model.Blocks.Select(b => new Block(Convert(b.Norm1.Weight), Convert(b.Norm1.Bias),
                Convert(b.Query.Weight), Convert(b.Query.Bias!), Convert(b.Key.Weight), Convert(b.Key.Bias!),
                Convert(b.Value.Weight), Convert(b.Value.Bias!), Convert(b.Output.Weight), Convert(b.Output.Bias!),
                Convert(b.Norm2.Weight), Convert(b.Norm2.Bias), Convert(b.Fc1.Weight), Convert(b.Fc1.Bias!), Convert(b.Fc2.Weight), Convert(b.Fc2.Bias!))).ToArray();
        }
        var pixels = Convert(VisionBench.Pixels(config, batch));
        long[] width = [config.Width];
        double eps = config.LayerNormEps;
        int heads = config.Heads, headDim = config.Width / config.Heads;
        TT Forward()
        {
            var x = conv2d(pixels, patch, strides: [config.PatchSize, config.PatchSize]).flatten(2).transpose(1, 2);
            x = torch.cat([cls.expand(batch, 1, config.Width), x], 1) + positions;
            x = layer_norm(x, width, preW, preB, eps);
            long t = x.shape[1];
            foreach (var b in blocks)
            {
                var h = layer_norm(x, width, b.Ln1W, b.Ln1B, eps);
                var q = linear(h, b.Qw, b.Qb).view(batch, t, heads, headDim).transpose(1, 2);
                var k = linear(h, b.Kw, b.Kb).view(batch, t, heads, headDim).transpose(1, 2);
                var v = linear(h, b.Vw, b.Vb).view(batch, t, heads, headDim).transpose(1, 2);
                var o = scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, t, config.Width);
                x = x + linear(o, b.Ow, b.Ob);
                h = linear(layer_norm(x, width, b.Ln2W, b.Ln2B, eps), b.F1w, b.F1b);
                h = h * torch.sigmoid(1.702 * h);
                x = x + linear(h, b.F2w, b.F2b);
            }
            return x;
        }
        using var noGrad = torch.no_grad();
        float[] rows;
        using (torch.NewDisposeScope())
        {
            var last = Forward();
            rows = torch.cat([last[0, 0], last[0, last.shape[1] - 1]], 0).to(torch.float32).data<float>().ToArray();
        }
        var seconds = new List<double>();
        for (int r = 0; r < repeats; r++)
        {
            using var scope = torch.NewDisposeScope();
            var watch = Stopwatch.StartNew();
            Forward();
            seconds.Add(watch.Elapsed.TotalSeconds);
        }
        return new JsonObject
        {
            ["peer"] = $"libtorch {torch.__version__} (TorchSharp {typeof(torch).Assembly.GetName().Version}), eager, no_grad, {dtypeName} weights and activations",
            ["threads"] = torch.get_num_threads(),
            ["seconds"] = new JsonArray(seconds.Select(s => (JsonNode)s).ToArray()),
            ["rows"] = Peers.Base64(rows),
        };
    }
}
