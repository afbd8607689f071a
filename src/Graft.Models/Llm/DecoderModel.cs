using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Models.Llm;

/// <summary>
/// A frozen Llama-family decoder (Llama, Qwen2, InternLM2) loaded from a Hugging Face folder. The families
/// differ only in configuration and weight names, which <see cref="LlmConfig"/> and <see cref="DecoderWeights"/>
/// absorb; this class runs them all the same way.
/// </summary>
public sealed partial class DecoderModel : IDisposable
{
    private readonly ISafeTensorsReader? _checkpoint;
    private readonly RotaryEmbedding _rope;
    private readonly float _attentionScale;

    private DecoderModel(string folder, LlmConfig config, DecoderWeights weights, ISafeTensorsReader? checkpoint)
    {
        Folder = folder;
        Config = config;
        Weights = weights;
        _checkpoint = checkpoint;
        _rope = new RotaryEmbedding(RopeFrequencies.Compute(config, 1));
        _attentionScale = 1f / MathF.Sqrt(config.HeadDim);
    }

    public string Folder { get; }
    public LlmConfig Config { get; }
    public DecoderWeights Weights { get; }

    /// <summary>
    /// Reads config.json and the weights (memory-mapped where the reader allows, in their stored types),
    /// checking every tensor's presence, shape and type before returning. The folder is only read.
    /// </summary>
    public static DecoderModel Load(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"model folder '{folder}' does not exist");
        var config = LlmConfig.Load(Path.Combine(folder, "config.json"));
        var checkpoint = SafeTensorsCheckpoint.Open(folder);
        try
        {
            return new DecoderModel(folder, config, DecoderWeights.Load(config, checkpoint), checkpoint);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A model over weights already in memory (benchmarks, tests): every layer must match
    /// <paramref name="config"/>; <see cref="Folder"/> is empty. Nothing is owned, so disposing is a no-op.
    /// </summary>
    public static DecoderModel FromWeights(LlmConfig config, DecoderWeights weights)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Layers.Length != config.NumLayers)
            throw new ArgumentException($"{weights.Layers.Length} layers of weights for a config of {config.NumLayers}", nameof(weights));
        return new DecoderModel("", config, weights, null);
    }

    /// <summary>
    /// Logits [T, V] for every position of <paramref name="ids"/>, placed after the tokens the cache holds
    /// (or at 0..T-1 without a cache); [1, V] for the last position only when asked, which spares the head's
    /// product for the others (what decoding needs). Inference: nothing is recorded.
    /// </summary>
    public Tensor Forward(ReadOnlySpan<int> ids, KvCache? cache = null, bool lastPositionOnly = false)
    {
        using var _ = Autograd.NoGrad();
        return ForwardEmbeddings(Embed(ids), cache, lastPositionOnly);
    }

    /// <summary>Token embeddings [T, C] (the input where plug-ins place their own embeddings).</summary>
    public Tensor Embed(ReadOnlySpan<int> ids)
    {
        if (ids.IsEmpty) throw new ArgumentException("no token ids to embed", nameof(ids));
        return Ops.Embedding(Weights.Embedding, ids, ids.Length);
    }

    /// <summary>
    /// Logits [T, V] (or [1, V], see <see cref="Forward"/>) from input embeddings [T, C]. Recorded for autograd when the embeddings require a
    /// gradient, so gradients flow through the frozen decoder to whatever produced them (the base weights
    /// never get one). A cache copies keys and values out of the graph, so it cannot be used while recording.
    /// <paramref name="hooks"/> (a plug-in's, for one request) act at the points <see cref="DecoderHooks"/> names; without
    /// them this is the base alone, on exactly the code path of a plain forward. With <paramref name="outputRows"/>, logits
    /// [rows, V] are computed for those positions only (training needs them where there is a target, and the head's
    /// product over a large vocabulary is the costliest one).
    /// </summary>
    public Tensor ForwardEmbeddings(Tensor embeddings, KvCache? cache = null, bool lastPositionOnly = false, DecoderHooks? hooks = null, int[]? outputRows = null)
    {
        var c = Config;
        if (embeddings.Rank != 2 || embeddings.Shape[1] != c.HiddenSize)
            throw new ArgumentException($"input embeddings must be [T, {c.HiddenSize}], got {embeddings.ShapeString}", nameof(embeddings));
        if (lastPositionOnly && outputRows is not null) throw new ArgumentException("ask for the last position or for output rows, not both", nameof(outputRows));
        int t = embeddings.Shape[0];
        int offset = cache?.Length ?? 0;
        if (cache is not null)
        {
            cache.CheckFits(c, t);
            if (Autograd.IsEnabled && embeddings.RequiresGrad)
                throw new InvalidOperationException("a KV cache cannot be used while recording gradients; run without a cache or under Autograd.NoGrad");
        }
        var positions = new int[t];
        for (int i = 0; i < t; i++) positions[i] = offset + i;
        var rope = RopeFor(offset + t);

        var mask = hooks?.MaskFor(offset, t);
        var h = hooks is null ? embeddings : hooks.Input(embeddings, positions);
        for (int i = 0; i < Weights.Layers.Length; i++)
        {
            var layer = Weights.Layers[i];
            if (hooks is not null)
            {
                h = HookedLayer(layer, h, positions, rope, cache, i, hooks, mask!);
                continue;
            }
            h = Ops.Add(h, Attention(layer, Ops.RmsNorm(h, layer.AttentionNorm, c.RmsNormEps), positions, rope, cache, i).Output);
            h = Ops.Add(h, FeedForward(layer, Ops.RmsNorm(h, layer.FfnNorm, c.RmsNormEps)));
        }
        cache?.Advance(t);
        if (lastPositionOnly && t > 1) h = Ops.Slice(h, 0, t - 1, 1);
        else if (outputRows is not null) h = Ops.GatherRows(h, outputRows);
        return hooks is null ? BaseOutput(h) : hooks.Output(h, BaseOutput);
    }

    /// <summary>h [T, C] -> logits [T, V]: the final norm and the head.</summary>
    private Tensor BaseOutput(Tensor h) => Ops.Linear(Ops.RmsNorm(h, Weights.FinalNorm, Config.RmsNormEps), Weights.Head);

    /// <summary>
    /// x [T, C] -> [T, C]: grouped-query causal attention over the cached and new tokens; with <paramref name="returnWeights"/>
    /// also its probabilities [1, H, T, cached + T]. A hook's <paramref name="mask"/> replaces the causal one; <paramref name="byToken"/>,
    /// when given, projects by token (<see cref="DecoderHooks.ProjectAttention"/>).
    /// </summary>
    private (Tensor Output, Tensor? Weights) Attention(DecoderLayerWeights w, Tensor x, int[] positions, RotaryEmbedding rope, KvCache? cache, int layer,
        bool returnWeights = false, AttentionMask? mask = null, DecoderHooks? byToken = null)
    {
        var c = Config;
        int t = x.Shape[0];
        var q = Ops.Rope(Project(x, w.Query, w.QueryBias, byToken, layer, AttentionProjection.Query, positions).Reshape(1, t, c.NumHeads, c.HeadDim), rope, positions);
        var k = Ops.Rope(Project(x, w.Key, w.KeyBias, byToken, layer, AttentionProjection.Key, positions).Reshape(1, t, c.NumKeyValueHeads, c.HeadDim), rope, positions);
        var v = Project(x, w.Value, w.ValueBias, byToken, layer, AttentionProjection.Value, positions).Reshape(1, t, c.NumKeyValueHeads, c.HeadDim);
        int offset = 0;
        if (cache is not null)
        {
            offset = cache.Length;
            (k, v) = cache.Append(layer, k, v);
        }
        var (attended, weights) = Ops.Attention(q, k, v, mask ?? AttentionMask.Causal(offset), _attentionScale, returnWeights);
        return (Project(attended.Reshape(t, c.NumHeads * c.HeadDim), w.Output, w.OutputBias, byToken, layer, AttentionProjection.Output, positions), weights);
    }

    /// <summary>x [T, in] -> [T, out] with the base's weight, or through <paramref name="byToken"/>'s hook (see <see cref="DecoderHooks.ProjectAttention"/>).</summary>
    private static Tensor Project(Tensor x, Tensor weight, Tensor? bias, DecoderHooks? byToken, int layer, AttentionProjection projection, int[] positions) =>
        byToken is null ? Ops.Linear(x, weight, bias) : ProjectByToken(x, weight, bias, byToken, layer, projection, positions);

    /// <summary>x [T, C] -> [T, C]: down(silu(gate(x)) · up(x)).</summary>
    private static Tensor FeedForward(DecoderLayerWeights w, Tensor x) =>
        Ops.Linear(Ops.SwiGlu(Ops.Linear(x, w.Gate, w.GateBias), Ops.Linear(x, w.Up, w.UpBias)), w.Down, w.DownBias);

    /// <summary>The rotary table for a sequence of <paramref name="length"/> positions; only dynamic NTK depends on it.</summary>
    private RotaryEmbedding RopeFor(int length) =>
        Config.RopeScaling.Kind == RopeScalingKind.Dynamic && length > Config.MaxPositionEmbeddings
            ? new RotaryEmbedding(RopeFrequencies.Compute(Config, length))
            : _rope;

    /// <summary>
    /// What a checkpoint folder holds, validated as <see cref="Load"/> does but from the headers alone:
    /// no weight is read, so it is quick on any size.
    /// </summary>
    public static CheckpointSummary Inspect(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"model folder '{folder}' does not exist");
        var config = LlmConfig.Load(Path.Combine(folder, "config.json"));
        using var checkpoint = SafeTensorsCheckpoint.Open(folder);
        var tensors = DecoderWeights.Check(config, checkpoint);
        return new CheckpointSummary(
            config,
            tensors.Sum(t => t.ElementCount),
            tensors.Sum(t => t.ByteLength),
            tensors.GroupBy(t => t.DType).ToDictionary(g => g.Key, g => g.Sum(t => t.ElementCount)));
    }

    /// <summary>Number of parameters (a tied head counted once).</summary>
    public long ParameterCount => Weights.All().Sum(t => (long)t.Length);

    /// <summary>Bytes the weights occupy in their stored types (InternLM2's split q/k/v counted once).</summary>
    public long WeightBytes => Weights.All().Sum(t => (long)t.Length * t.DType.SizeOf());

    /// <summary>Parameter counts by stored type.</summary>
    public IReadOnlyDictionary<DType, long> ParametersByDType =>
        Weights.All().GroupBy(t => t.DType).ToDictionary(g => g.Key, g => g.Sum(t => (long)t.Length));

    public void Dispose() => _checkpoint?.Dispose();
}

/// <summary>A checkpoint's config and its weights as stored: parameters (a tied head once), bytes, and parameters per type.</summary>
public sealed record CheckpointSummary(LlmConfig Config, long ParameterCount, long WeightBytes, IReadOnlyDictionary<DType, long> ParametersByDType)
{
    /// <summary>KV cache bytes per token (float32 keys and values of every layer).</summary>
    public long KvCacheBytesPerToken => 2L * Config.NumLayers * Config.NumKeyValueHeads * Config.HeadDim * sizeof(float);
}
