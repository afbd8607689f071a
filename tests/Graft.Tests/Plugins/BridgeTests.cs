using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>Bridge (LLaVA-1.5) against tools/reference/plugins_golden.py and its prompt layout.</summary>
public class BridgeTests
{
    public static TheoryData<string> ProjectorCases => GoldenCase.Names("plugins");

    [Theory]
    [MemberData(nameof(ProjectorCases))]
    public void Projector_forward_and_gradients_match_pytorch(string name)
    {
        using var golden = GoldenCase.Open("plugins", name);
        var features = golden.Input("features", trainable: true);
        var projector = new GeluProjector(golden.Input("w1", true), golden.Input("b1", true), golden.Input("w2", true), golden.Input("b2", true));
        var y = projector.Forward(features);
        TensorAssert.Close(golden.Expected("y"), y, rtol: 1e-5f, atol: 1e-5f, what: $"{name} y");
        Ops.Sum(Ops.Mul(y, golden.Input("upstream"))).Backward();
        TensorAssert.Close(golden.ExpectedGrad("features"), features.Grad!, rtol: 1e-4f, atol: 1e-5f, what: $"{name} dZ");
        TensorAssert.Close(golden.ExpectedGrad("w1"), projector.W1.Grad!, rtol: 1e-4f, atol: 1e-5f, what: $"{name} dW1");
        TensorAssert.Close(golden.ExpectedGrad("b1"), projector.B1.Grad!, rtol: 1e-4f, atol: 1e-5f, what: $"{name} db1");
        TensorAssert.Close(golden.ExpectedGrad("w2"), projector.W2.Grad!, rtol: 1e-4f, atol: 1e-5f, what: $"{name} dW2");
        TensorAssert.Close(golden.ExpectedGrad("b2"), projector.B2.Grad!, rtol: 1e-4f, atol: 1e-5f, what: $"{name} db2");
    }

    [Fact]
    public void Prepare_puts_projected_features_at_the_image_and_targets_assistant_tokens_only()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var bridge = PluginFixtures.RandomBridge(model, 1);
        var image = PluginFixtures.Image(2);
        var prompt = new MultimodalPrompt([new TextPart([1, 17]), new ImagePart(image), new TextPart([9]), new TextPart([88, 5], IsAssistant: true)]);
        using var _ = Autograd.NoGrad();
        var input = bridge.Prepare(prompt);

        Assert.Equal([9, 64], input.Embeddings.Shape);
        Assert.Equal([false, false, true, true, true, true, false, false, false], input.ImageMask);
        Assert.Equal([-100, -100, -100, -100, -100, -100, 88, 5, -100], input.Targets);
        Assert.Null(input.Hooks);
        var projected = bridge.Project(PluginFixtures.Vision().Encode(image));
        Assert.Equal(projected.ToArray(), Ops.Slice(input.Embeddings, 0, 2, 4).ToArray());
        Assert.Equal(model.Embed([1, 17]).ToArray(), Ops.Slice(input.Embeddings, 0, 0, 2).ToArray());
        Assert.Equal(model.Embed([9, 88, 5]).ToArray(), Ops.Slice(input.Embeddings, 0, 6, 3).ToArray());

        var precomputed = bridge.Prepare(new MultimodalPrompt([new TextPart([1, 17]), new ImagePart(PluginFixtures.Vision().Encode(image)), new TextPart([9])]));
        Assert.Equal(Ops.Slice(input.Embeddings, 0, 0, 7).ToArray(), precomputed.Embeddings.ToArray());
    }

    [Fact]
    public void A_multimodal_prompt_decodes_with_the_cache_as_it_recomputes()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        var bridge = PluginFixtures.RandomBridge(model, 1);
        using var _ = Autograd.NoGrad();
        var input = bridge.Prepare(new MultimodalPrompt([new TextPart([5, 17]), new ImagePart(PluginFixtures.Image(2)), new TextPart([9])]));
        var cache = new KvCache(model.Config, 16);
        var prefill = model.ForwardEmbeddings(input.Embeddings, cache, hooks: input.Hooks);
        var step = model.Forward([42], cache);
        var full = model.ForwardEmbeddings(Ops.Concat([input.Embeddings, model.Embed([42])], 0));
        TensorAssert.Close(Ops.Slice(full, 0, 0, input.Length), prefill, rtol: 1e-5f, atol: 1e-5f, what: "prefill");
        TensorAssert.Close(Ops.Slice(full, 0, input.Length, 1), step, rtol: 1e-5f, atol: 1e-5f, what: "decode step");
    }

    [Fact]
    public void Parse_replaces_each_image_placeholder_in_order_and_counts_them()
    {
        var first = new ImagePart(PluginFixtures.Image(1));
        var second = new ImagePart(PluginFixtures.Image(2));
        int[] Encode(string text) => text.Select(c => (int)c).ToArray();
        var prompt = MultimodalPrompt.Parse("ab<image>\nc<image>", [first, second], Encode);
        Assert.Equal(4, prompt.Parts.Count);
        Assert.Equal(new[] { 'a', 'b' }.Select(c => (int)c), ((TextPart)prompt.Parts[0]).Ids);
        Assert.Same(first, prompt.Parts[1]);
        Assert.Same(second, prompt.Parts[3]);
        Assert.Contains("2 '<image>' placeholder(s) for 1 image(s)", Assert.Throws<ArgumentException>(() => MultimodalPrompt.Parse("<image><image>", [first], Encode)).Message);
    }

    [Fact]
    public void Creation_is_seeded_and_initialised_as_nn_linear()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var a = Bridge.Create(model, PluginFixtures.Vision(), new BridgeOptions { Seed = 4 });
        var b = Bridge.Create(model, PluginFixtures.Vision(), new BridgeOptions { Seed = 4 });
        var c = Bridge.Create(model, PluginFixtures.Vision(), new BridgeOptions { Seed = 5 });
        Assert.Equal(a.Parameters[0].Tensor.ToArray(), b.Parameters[0].Tensor.ToArray());
        Assert.NotEqual(a.Parameters[0].Tensor.ToArray(), c.Parameters[0].Tensor.ToArray());
        Assert.All(a.Parameters, p => Assert.True(p.Tensor.RequiresGrad && p.Part == "projector"));
        float bound1 = 1f / MathF.Sqrt(12), bound2 = 1f / MathF.Sqrt(64);
        Assert.All(a.Projector.W1.ToArray(), v => Assert.InRange(v, -bound1, bound1));
        Assert.All(a.Projector.W2.ToArray(), v => Assert.InRange(v, -bound2, bound2));
        Assert.True(a.Projector.W1.ToArray().Max() > bound1 * 0.8f, "weights spread over their range");
        Assert.Equal(BridgeTune.Projector, a.Tune);
    }
}
