using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.Optim;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>docs/architecture.md's promises: text-only is the base bit for bit, the base is never written, the seam is free.</summary>
public class PromiseTests
{
    public static TheoryData<string> Families => new(PluginFixtures.Families);

    private static readonly int[] Ids = [1, 17, 42, 9, 3, 88, 5];

    [Theory]
    [MemberData(nameof(Families))]
    public void Text_only_logits_are_bit_identical_to_the_base_with_one_and_with_two_plugins(string family)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var alone = PluginFixtures.Bits(model.Forward(Ids));

        var host = new PluginHost(model);
        host.Attach("first", PluginFixtures.RandomBridge(model, seed: 1));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward("first", MultimodalPrompt.FromIds(Ids))));

        host.Attach("second", PluginFixtures.RandomBridge(model, seed: 2));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward("first", MultimodalPrompt.FromIds(Ids))));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward("second", MultimodalPrompt.FromIds(Ids))));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward(null, MultimodalPrompt.FromIds(Ids))));

        // The same plug-ins do change a request with an image, so the identity above is not vacuous.
        var withImage = new MultimodalPrompt([new TextPart(Ids), new ImagePart(PluginFixtures.Image(3))]);
        var first = host.Forward("first", withImage);
        var second = host.Forward("second", withImage);
        Assert.Equal(Ids.Length + 4, first.Shape[0]);
        Assert.NotEqual(PluginFixtures.Bits(Ops.Slice(first, 0, Ids.Length, 4)), PluginFixtures.Bits(Ops.Slice(second, 0, Ids.Length, 4)));
    }

    [Fact]
    public void A_text_only_request_runs_no_plugin_code()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var spy = new SpyPlugin(model);
        var host = new PluginHost(model);
        host.Attach("spy", spy);
        var logits = host.Forward("spy", MultimodalPrompt.FromIds(Ids));
        Assert.Equal(0, spy.Prepared);
        Assert.Equal(0, spy.Hooks.Before + spy.Hooks.Beside + spy.Hooks.Ffn + spy.Hooks.After + spy.Hooks.Outputs);
        Assert.Equal(PluginFixtures.Bits(model.Forward(Ids)), PluginFixtures.Bits(logits));

        host.Forward("spy", new MultimodalPrompt([new TextPart(Ids), new ImagePart(PluginFixtures.Image(1))]));
        Assert.Equal(1, spy.Prepared);
        Assert.Equal(model.Config.NumLayers, spy.Hooks.Before);
        Assert.Equal(1, spy.Hooks.Outputs);
    }

    [Fact]
    public void Routing_refuses_an_image_without_a_plugin_an_unknown_name_and_text_routing_for_a_design_that_ignores_text()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var host = new PluginHost(model);
        var bridge = PluginFixtures.RandomBridge(model, 1);
        host.Attach("bridge", bridge);
        var image = new MultimodalPrompt([new TextPart(Ids), new ImagePart(PluginFixtures.Image(1))]);
        Assert.Contains("must name a plug-in", Assert.Throws<ArgumentException>(() => host.Forward(null, image)).Message);
        Assert.Contains("attached: bridge", Assert.Throws<KeyNotFoundException>(() => host.Forward("wings", image)).Message);
        Assert.Contains("does nothing to text", Assert.Throws<ArgumentException>(() => host.Attach("again", bridge, TextRoute.Plugin)).Message);
        Assert.Contains("already attached", Assert.Throws<ArgumentException>(() => host.Attach("bridge", bridge)).Message);
        using var other = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        Assert.Contains("another base", Assert.Throws<ArgumentException>(() => new PluginHost(other).Attach("bridge", bridge)).Message);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Pass_through_hooks_give_the_base_bits_and_every_point_is_reached_once_per_layer(string family)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var alone = PluginFixtures.Bits(model.Forward(Ids));
        using var _ = Autograd.NoGrad();
        Assert.Equal(alone, PluginFixtures.Bits(model.ForwardEmbeddings(model.Embed(Ids))));

        var hooks = new CountingHooks();
        Assert.Equal(alone, PluginFixtures.Bits(model.ForwardEmbeddings(model.Embed(Ids), hooks: hooks)));
        int layers = model.Config.NumLayers;
        Assert.Equal(layers, hooks.Before);
        Assert.Equal(layers, hooks.Beside);
        Assert.Equal(layers, hooks.Ffn);
        Assert.Equal(layers, hooks.After);
        Assert.Equal(1, hooks.Outputs);
        Assert.Equal([1, model.Config.NumHeads, Ids.Length, Ids.Length], hooks.WeightsShape!);
        Assert.Equal(Enumerable.Range(0, Ids.Length), hooks.Positions);
    }

    [Fact]
    public void Hooks_see_the_chunk_positions_and_the_cached_keys_during_a_cached_decode()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        using var _ = Autograd.NoGrad();
        var cache = new KvCache(model.Config, 16);
        var hooks = new CountingHooks();
        var prefill = model.ForwardEmbeddings(model.Embed(Ids), cache, hooks: hooks);
        var step = model.ForwardEmbeddings(model.Embed([7]), cache, hooks: hooks);
        Assert.Equal([Ids.Length], hooks.Positions);
        Assert.Equal([1, model.Config.NumHeads, 1, Ids.Length + 1], hooks.WeightsShape!);
        var full = model.Forward([.. Ids, 7]);
        Assert.Equal(PluginFixtures.Bits(model.Forward(Ids, new KvCache(model.Config, 16))), PluginFixtures.Bits(prefill));
        TensorAssert.Close(Ops.Slice(full, 0, Ids.Length, 1), step, rtol: 1e-5f, atol: 1e-5f, what: "cached step with hooks");
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2")]
    public void A_training_step_changes_the_plugin_and_never_a_base_weight(string family)
    {
        string folder = PluginFixtures.ModelFolder(family);
        string filesBefore = PluginFixtures.HashFolder(folder);
        using var model = DecoderModel.Load(folder);
        string before = PluginFixtures.HashWeights(model);
        var bridge = PluginFixtures.RandomBridge(model, seed: 5);
        var projectorBefore = bridge.Parameters.Select(p => p.Tensor.ToArray()).ToList();

        var prompt = new MultimodalPrompt([new TextPart([1, 17, 42]), new ImagePart(PluginFixtures.Image(9)), new TextPart([9, 3]), new TextPart([88, 5, 6], IsAssistant: true)]);
        var input = bridge.Prepare(prompt);
        var loss = Ops.CrossEntropy(model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks), input.Targets);
        loss.Backward();
        var optimiser = new AdamW([new ParameterGroup(bridge.Parameters.Select(p => p.Tensor).ToList(), 1e-2f, 0.01f)]);
        optimiser.Step();

        Assert.All(bridge.Parameters, p => Assert.NotNull(p.Tensor.Grad));
        Assert.All(model.Weights.All(), t => Assert.Null(t.Grad));
        Assert.Contains(bridge.Parameters.Select((p, i) => (p, i)), x => !x.p.Tensor.ToArray().SequenceEqual(projectorBefore[x.i]));
        Assert.Equal(before, PluginFixtures.HashWeights(model));
        Assert.Equal(filesBefore, PluginFixtures.HashFolder(folder));
    }

    private sealed class SpyPlugin(DecoderModel model) : IPlugin
    {
        private readonly Bridge _inner = PluginFixtures.RandomBridge(model, 7);
        public int Prepared { get; private set; }
        public CountingHooks Hooks { get; } = new();
        public string Design => "spy";
        public PluginManifest Manifest => _inner.Manifest;
        public DecoderModel Base => model;
        public IReadOnlyList<PluginParameter> Parameters => _inner.Parameters;
        public bool CanRouteText => false;
        public bool CanEncodePixels => true;
        public PromptLayout Layout => _inner.Layout;

        public PreparedInput Prepare(MultimodalPrompt prompt)
        {
            Prepared++;
            return _inner.Prepare(prompt) with { Hooks = Hooks };
        }
    }

    /// <summary>Overrides every point, passing through, and counts calls.</summary>
    private sealed class CountingHooks : DecoderHooks
    {
        public int Before, Beside, Ffn, After, Outputs;
        public int[]? WeightsShape;
        public int[] Positions = [];

        public override Tensor BeforeAttention(int layer, Tensor normedInput, ReadOnlySpan<int> positions)
        {
            Before++;
            Positions = positions.ToArray();
            return normedInput;
        }

        public override bool NeedsAttentionWeights(int layer) => true;

        public override Tensor BesideAttention(int layer, Tensor hidden, Tensor? attentionWeights, ReadOnlySpan<int> positions)
        {
            Beside++;
            WeightsShape = attentionWeights?.Shape;
            return hidden;
        }

        public override Tensor FeedForward(int layer, Tensor normedInput, Func<Tensor, Tensor> baseFeedForward, ReadOnlySpan<int> positions)
        {
            Ffn++;
            return baseFeedForward(normedInput);
        }

        public override Tensor AfterLayer(int layer, Tensor hidden, ReadOnlySpan<int> positions)
        {
            After++;
            return hidden;
        }

        public override Tensor Output(Tensor hidden, Func<Tensor, Tensor> baseOutput)
        {
            Outputs++;
            return baseOutput(hidden);
        }
    }
}
