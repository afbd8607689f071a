using System.Diagnostics;
using System.Text.Json.Nodes;
using Graft.Benchmarking;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using TorchSharp;
using static TorchSharp.torch.nn.functional;
using GraftTensor = Graft.Tensors.Tensor;
using TT = TorchSharp.torch.Tensor;

namespace Graft.Peers;

/// <summary>
/// A Qwen2-style decoder written in libtorch ops, as a .NET user of TorchSharp would write it (transformers' Qwen2 in
/// TorchSharp): RMSNorm computed in float32, q/k/v projections with bias, rotate-half RoPE, grouped-query attention through
/// scaled_dot_product_attention (libtorch's fused CPU kernel), SwiGLU MLP, tied head. Weights are the bench's own random
/// weights (<see cref="RandomWeights"/>), so the outputs can be compared with Graft's. In bf16 every weight and activation
/// is bf16 (model.to(torch.bfloat16)), except the norms' statistics.
/// </summary>
sealed class TorchDecoder : IDisposable
{
    sealed class Layer
    {
        public required TT AttentionNorm, Wq, Bq, Wk, Bk, Wv, Bv, Wo, FfnNorm, Gate, Up, Down;
        public TT? Keys, Values;
    }

    readonly LlmConfig config;
    readonly torch.ScalarType dtype;
    readonly TT embedding, finalNorm, cos, sin;
    readonly Layer[] layers;

    public TorchDecoder(LlmConfig config, DecoderWeights weights, torch.ScalarType dtype, int maxTokens)
    {
        this.config = config;
        this.dtype = dtype;
        embedding = ToTorch(weights.Embedding, dtype);
        finalNorm = ToTorch(weights.FinalNorm, dtype);
        layers = weights.Layers.Select(w => new Layer
        {
            AttentionNorm = ToTorch(w.AttentionNorm, dtype), Wq = ToTorch(w.Query, dtype), Bq = ToTorch(w.QueryBias!, dtype),
            Wk = ToTorch(w.Key, dtype), Bk = ToTorch(w.KeyBias!, dtype), Wv = ToTorch(w.Value, dtype), Bv = ToTorch(w.ValueBias!, dtype),
            Wo = ToTorch(w.Output, dtype), FfnNorm = ToTorch(w.FfnNorm, dtype),
            Gate = ToTorch(w.Gate, dtype), Up = ToTorch(w.Up, dtype), Down = ToTorch(w.Down, dtype),
        }).ToArray();
        // The rotary table in float64, rounded to float32, then to the model's dtype (as transformers does).
        using (torch.NewDisposeScope())
        {
            var inverse = 1.0 / torch.pow(config.RopeTheta, torch.arange(0, config.HeadDim, 2, torch.float64) / config.HeadDim);
            var angles = torch.outer(torch.arange(maxTokens, torch.float64), inverse);
            angles = torch.cat([angles, angles], -1);
            cos = angles.cos().to(torch.float32).to(dtype).MoveToOuterDisposeScope();
            sin = angles.sin().to(torch.float32).to(dtype).MoveToOuterDisposeScope();
        }
    }

    /// <summary>A Graft tensor as a libtorch tensor of <paramref name="dtype"/> (bf16 weights widen and narrow back exactly).</summary>
    public static TT ToTorch(GraftTensor t, torch.ScalarType dtype)
    {
        var values = t.ToArray();
        var shape = t.Shape.Select(x => (long)x).ToArray();
        var f32 = torch.tensor(values, shape);
        if (dtype == torch.ScalarType.Float32) return f32;
        var converted = f32.to(dtype);
        f32.Dispose();
        return converted;
    }

    public void AllocateCache(int maxTokens)
    {
        foreach (var layer in layers)
        {
            layer.Keys = torch.zeros([1, config.NumKeyValueHeads, maxTokens, config.HeadDim], dtype);
            layer.Values = torch.zeros([1, config.NumKeyValueHeads, maxTokens, config.HeadDim], dtype);
        }
    }

    TT RmsNorm(TT x, TT weight)
    {
        var f = x.to(torch.float32);
        f = f * torch.rsqrt(f.pow(2).mean([-1L], keepdim: true) + config.RmsNormEps);
        return weight * f.to(dtype);
    }

    static TT RotateHalf(TT x)
    {
        long half = x.shape[^1] / 2;
        return torch.cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
    }

    /// <summary>x [B, T, d] at positions start.. -> the attention block's output; with the cache, keys and values are kept.</summary>
    TT Attention(Layer layer, TT x, long start, bool cached)
    {
        long b = x.shape[0], t = x.shape[1];
        int h = config.NumHeads, kv = config.NumKeyValueHeads, hd = config.HeadDim;
        var q = linear(x, layer.Wq, layer.Bq).view(b, t, h, hd).transpose(1, 2);
        var k = linear(x, layer.Wk, layer.Bk).view(b, t, kv, hd).transpose(1, 2);
        var v = linear(x, layer.Wv, layer.Bv).view(b, t, kv, hd).transpose(1, 2);
        var c = cos.narrow(0, start, t);
        var s = sin.narrow(0, start, t);
        q = q * c + RotateHalf(q) * s;
        k = k * c + RotateHalf(k) * s;
        if (cached)
        {
            layer.Keys!.narrow(2, start, t).copy_(k);
            layer.Values!.narrow(2, start, t).copy_(v);
            k = layer.Keys.narrow(2, 0, start + t);
            v = layer.Values.narrow(2, 0, start + t);
        }
        int group = h / kv;
        k = k.repeat_interleave(group, 1);
        v = v.repeat_interleave(group, 1);
        // Causal from the first position: the bench's multi-token forwards all start at 0; single tokens see everything.
        var o = scaled_dot_product_attention(q, k, v, is_casual: t > 1);
        return linear(o.transpose(1, 2).reshape(b, t, h * hd), layer.Wo);
    }

    TT Hidden(TT h, long start, bool cached)
    {
        foreach (var layer in layers)
        {
            h = h + Attention(layer, RmsNorm(h, layer.AttentionNorm), start, cached);
            var x = RmsNorm(h, layer.FfnNorm);
            h = h + linear(silu(linear(x, layer.Gate)) * linear(x, layer.Up), layer.Down);
        }
        return h;
    }

    TT Embed(TT ids) => embedding.index_select(0, ids.view(-1)).view(ids.shape[0], ids.shape[1], -1);

    /// <summary>Logits [V] (float32) of the last of <paramref name="ids"/>, fed at positions start.., through the cache.</summary>
    public float[] ForwardLast(int[] ids, long start)
    {
        using var scope = torch.NewDisposeScope();
        var input = torch.tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length]);
        var h = Hidden(Embed(input), start, cached: true);
        var last = RmsNorm(h.narrow(1, ids.Length - 1, 1), finalNorm);
        return linear(last, embedding).to(torch.float32).data<float>().ToArray();
    }

    /// <summary>Hidden states after the final norm at <paramref name="rows"/> of a batch of embedded sequences [B, T, d], no cache.</summary>
    public TT HeadLogits(TT embedded, long firstRow, long rows)
    {
        var h = Hidden(embedded, 0, cached: false);
        return linear(RmsNorm(h.narrow(1, firstRow, rows), finalNorm), embedding);
    }

    public TT EmbedBatch(TT ids) => Embed(ids);

    public torch.ScalarType DType => dtype;

    public void Dispose()
    {
        foreach (var layer in layers)
            foreach (var t in new[] { layer.AttentionNorm, layer.Wq, layer.Bq, layer.Wk, layer.Bk, layer.Wv, layer.Bv, layer.Wo, layer.FfnNorm, layer.Gate, layer.Up, layer.Down, layer.Keys, layer.Values })
                t?.Dispose();
        embedding.Dispose(); finalNorm.Dispose(); cos.Dispose(); sin.Dispose();
    }

    static torch.ScalarType TorchType(string name) => name == "bf16" ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32;

    static DType GraftType(string name) => name == "bf16" ? Tensors.DType.BF16 : Tensors.DType.F32;

    /// <summary>
    /// torch-decode: {layers, dtype: f32|bf16, threads, prompt: [ids], decode_tokens, prefill_repeats} ->
    /// {torch, threads, prefill_seconds: [..], decode_seconds: [..], logits: base64 f32 of the prompt's last position, tokens: greedy}.
    /// </summary>
    public static JsonObject Decode(JsonObject request)
    {
        int threads = (int)request["threads"]!;
        torch.set_num_threads(threads);
        var config = DecodeBench.Qwen2HalfBillion((int)request["layers"]!);
        string dtypeName = (string)request["dtype"]!;
        int[] prompt = request["prompt"]!.AsArray().Select(n => (int)n!).ToArray();
        int decodeTokens = (int)request["decode_tokens"]!, repeats = (int)request["prefill_repeats"]!;
        using var model = new TorchDecoder(config, RandomWeights.Build(config, GraftType(dtypeName), seed: 1), TorchType(dtypeName), prompt.Length + decodeTokens);
        model.AllocateCache(prompt.Length + decodeTokens);
        using var noGrad = torch.no_grad();
        // Warm-up, as ours: a short prompt and a few single steps.
        model.ForwardLast(prompt[..32], 0);
        for (int i = 0; i < 4; i++) model.ForwardLast([prompt[32 + i]], 32 + i);
        var prefill = new List<double>();
        float[] logits = [];
        for (int r = 0; r < repeats; r++)
        {
            var watch = Stopwatch.StartNew();
            logits = model.ForwardLast(prompt, 0);
            prefill.Add(watch.Elapsed.TotalSeconds);
        }
        var promptLogits = logits;
        var steps = new List<double>();
        var tokens = new JsonArray();
        int next = ArgMax(logits);
        for (int i = 0; i < decodeTokens; i++)
        {
            tokens.Add(next);
            var watch = Stopwatch.StartNew();
            logits = model.ForwardLast([next], prompt.Length + i);
            next = ArgMax(logits);
            steps.Add(watch.Elapsed.TotalSeconds);
        }
        return new JsonObject
        {
            ["peer"] = $"libtorch {torch.__version__} (TorchSharp {typeof(torch).Assembly.GetName().Version}), eager, no_grad, {dtypeName} weights and activations",
            ["threads"] = torch.get_num_threads(),
            ["prefill_seconds"] = new JsonArray(prefill.Select(s => (JsonNode)s).ToArray()),
            ["decode_seconds"] = new JsonArray(steps.Select(s => (JsonNode)s).ToArray()),
            ["logits"] = Peers.Base64(promptLogits),
            ["tokens"] = tokens,
        };
    }

    static int ArgMax(float[] values) => System.Numerics.Tensors.TensorPrimitives.IndexOfMax(values);

    /// <summary>
    /// torch-train: {shape: small|qwen2-0.5b, layers, dtype, threads} -> {torch, step_seconds: [..], first_loss}. The
    /// Bridge step of `graft bench train` (TrainBench): the same sequences and projector initialisation, the batch as one
    /// [B, T] tensor; projector in float32 (its output cast to the base's dtype), AdamW (lr 1e-4, no decay).
    /// </summary>
    public static JsonObject Train(JsonObject request)
    {
        int threads = (int)request["threads"]!;
        torch.set_num_threads(threads);
        var c = TrainBench.Cases((int)request["layers"]!).Single(x => x.Key == (string)request["case"]!);
        string dtypeName = (string)request["dtype"]!;
        var config = c.Config;
        var prompts = TrainBench.Prompts(c);
        int lead = TrainBench.LeadTokens, image = TrainBench.ImageTokens, answer = TrainBench.AnswerTokens, length = TrainBench.SequenceLength;
        int batch = prompts.Length;
        var ids = new long[batch * length];
        var features = new float[batch * image * c.VisionWidth];
        for (int b = 0; b < batch; b++)
        {
            var parts = prompts[b].Parts;
            int position = 0;
            foreach (var part in parts)
            {
                if (part is TextPart text) foreach (int id in text.Ids) ids[b * length + position++] = id;
                else if (part is ImagePart picture)
                {
                    picture.Features!.ToArray().CopyTo(features, b * image * c.VisionWidth);
                    position += image;
                }
            }
        }
        var projector = GeluProjector.Create(c.VisionWidth, config.HiddenSize, new Random(TrainBench.ProjectorSeed));
        var parameters = new[] { projector.W1, projector.B1, projector.W2, projector.B2 }
            .Select(p => new TorchSharp.Modules.Parameter(ToTorch(p, torch.ScalarType.Float32))).ToArray();
        var optimizer = torch.optim.AdamW(parameters, lr: 1e-4, weight_decay: 0);
        using var model = new TorchDecoder(config, RandomWeights.Build(config, GraftType(dtypeName), seed: 1), TorchType(dtypeName), length);
        var idTensor = torch.tensor(ids, [batch, length]);
        var featureTensor = torch.tensor(features, [batch, image, c.VisionWidth]);
        var targets = idTensor.narrow(1, length - answer, answer).reshape(-1);
        var times = new List<double>();
        double firstLoss = double.NaN;
        for (int step = 0; step < c.WarmupSteps + c.Steps; step++)
        {
            var watch = Stopwatch.StartNew();
            using (torch.NewDisposeScope())
            {
                var text = model.EmbedBatch(idTensor);
                var projected = linear(gelu(linear(featureTensor, parameters[0], parameters[1])), parameters[2], parameters[3]).to(model.DType);
                var h = torch.cat([text.narrow(1, 0, lead), projected, text.narrow(1, lead + image, length - lead - image)], 1);
                var logits = model.HeadLogits(h, length - answer - 1, answer).to(torch.float32);
                var loss = cross_entropy(logits.reshape(-1, logits.shape[^1]), targets);
                if (step == 0) firstLoss = loss.item<float>();
                loss.backward();
                optimizer.step();
                optimizer.zero_grad();
            }
            if (step >= c.WarmupSteps) times.Add(watch.Elapsed.TotalSeconds);
        }
        return new JsonObject
        {
            ["peer"] = $"libtorch {torch.__version__} (TorchSharp {typeof(torch).Assembly.GetName().Version}), eager, the batch as one [B, T] tensor, {dtypeName} base",
            ["threads"] = torch.get_num_threads(),
            ["step_seconds"] = new JsonArray(times.Select(s => (JsonNode)s).ToArray()),
            ["first_loss"] = firstLoss,
        };
    }
}
