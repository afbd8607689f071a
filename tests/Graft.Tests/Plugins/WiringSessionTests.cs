using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;

namespace Graft.Tests.Plugins;

/// <summary><see cref="PluginSession"/>: cached multimodal decoding equals recomputation; text-only requests are the base's own.</summary>
public class WiringSessionTests
{
    private const int Steps = 6;

    [Fact]
    public void Cached_multimodal_greedy_decoding_equals_recomputing_the_whole_sequence_with_patch_pixels()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var host = new PluginHost(model);
        host.Attach("b", PluginFixtures.RandomBridge(model, seed: 5));
        CheckBridgeLayout(host, "b", PluginFixtures.Image(8));
        CheckCachedEqualsRecomputed(host, "b", PluginFixtures.Image(8));
    }

    [Fact]
    public void Cached_multimodal_greedy_decoding_equals_recomputing_the_whole_sequence_with_a_clip_tower()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        using var vision = VisionTowerFrontEnd.Load(WiringVisionTests.Tower("clip_vision"));
        var bridge = Bridge.Create(model, vision, new BridgeOptions { Seed = 6 });
        var host = new PluginHost(model);
        host.Attach("b", bridge);
        CheckCachedEqualsRecomputed(host, "b", ImageDecoder.Load(WiringVisionTests.Photo));
    }

    // The tiny InternLM2 uses dynamic NTK over 16 positions, past which a cached decode differs from recomputation by
    // design (as in transformers); sequences with many image tokens therefore use the other families.
    public static TheoryData<string, string> DesignsAndFamilies => new()
    {
        { Mma.DesignName, "qwen2" }, { Mma.DesignName, "llama" },
        { InnerAdaptor.DesignName, "qwen2" }, { InnerAdaptor.DesignName, "internlm2" },
        { Wings.DesignName, "qwen2" }, { Wings.DesignName, "llama" },
        { VisualExperts.DesignName, "qwen2" }, { VisualExperts.DesignName, "llama" },
    };

    /// <summary>Bridge's layout: the text ids keep their positions; image positions show the stand-in id 0.</summary>
    private static void CheckBridgeLayout(PluginHost host, string plugin, RgbImage image)
    {
        var request = new PluginSession(host, plugin, maxSequenceLength: 128)
            .Request(new MultimodalPrompt([new TextPart([1, 17, 23]), new ImagePart(image), new TextPart([42, 9, 5])]));
        int imageTokens = request.PromptIds.Count - 6;
        Assert.True(imageTokens > 0);
        Assert.Equal([1, 17, 23, .. Enumerable.Repeat(0, imageTokens), 42, 9, 5], request.PromptIds);
    }

    /// <summary>
    /// Every design whose state lives in its hooks (MMA's router weights, IAA's inner caches, WINGS' learner keys, the
    /// experts' token routing), with random non-zero weights so that no part starts as the identity, generates through
    /// the session's cache exactly as it recomputes.
    /// </summary>
    [Theory]
    [MemberData(nameof(DesignsAndFamilies))]
    public void Every_design_decodes_through_the_session_as_it_recomputes(string design, string family)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        IPlugin plugin = design switch
        {
            Mma.DesignName => Mma.Create(model, PluginFixtures.Vision(), new MmaOptions { Seed = 11 }),
            InnerAdaptor.DesignName => InnerAdaptor.Create(model, PluginFixtures.Vision(), new InnerAdaptorOptions { Seed = 11 }),
            Wings.DesignName => Wings.Create(model, PluginFixtures.Vision(), new WingsOptions { Seed = 11 }),
            _ => VisualExperts.Create(model, new VisualExpertsOptions { Seed = 11 }),
        };
        var random = new Random(12);
        foreach (var p in plugin.Parameters)
        {
            var span = p.Tensor.Span;
            for (int i = 0; i < span.Length; i++) span[i] += (float)(random.NextDouble() * 2 - 1) * 0.1f;
        }
        var host = new PluginHost(model);
        host.Attach("p", plugin);
        CheckCachedEqualsRecomputed(host, "p", PluginFixtures.Image(9));
    }

    /// <summary>Greedy steps through the session's cached state; each step's logits against a full forward of prompt + tokens so far.</summary>
    private static void CheckCachedEqualsRecomputed(PluginHost host, string plugin, RgbImage image)
    {
        PromptPart[] parts = [new TextPart([1, 17, 23]), new ImagePart(image), new TextPart([42, 9, 5])];
        var session = new PluginSession(host, plugin, maxSequenceLength: 128);
        var request = session.Request(new MultimodalPrompt(parts));
        Assert.NotNull(request.Plugin);
        Assert.True(request.PromptIds.Count > 6);

        var generated = new List<int>();
        using var state = request.CreateState();
        var cached = state.Append(request.PromptIds.ToArray()).ToArray();
        for (int step = 0; step < Steps; step++)
        {
            var recomputed = host.Forward(plugin, new MultimodalPrompt([.. parts, .. generated.Count == 0 ? Array.Empty<PromptPart>() : [new TextPart(generated.ToArray())]]),
                lastPositionOnly: true).ToArray();
            Assert.Equal(recomputed.Length, cached.Length);
            for (int v = 0; v < cached.Length; v++)
                Assert.True(Math.Abs(recomputed[v] - cached[v]) <= 1e-5f, $"step {step}, logit {v}: cached {cached[v]}, recomputed {recomputed[v]}");
            int token = ArgMax(cached);
            Assert.Equal(ArgMax(recomputed), token);
            generated.Add(token);
            cached = state.Append([token]).ToArray();
        }
        Assert.Equal(request.PromptIds.Count + Steps, state.Length);
    }

    [Fact]
    public void A_text_only_request_is_the_base_alone_bit_for_bit_and_generates_the_same_tokens()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var host = new PluginHost(model);
        host.Attach("b", PluginFixtures.RandomBridge(model, seed: 7));
        int[] prompt = [1, 17, 42, 9];
        var request = new PluginSession(host, "b", maxSequenceLength: 64).Request(MultimodalPrompt.FromIds(prompt));
        Assert.Null(request.Plugin);
        Assert.Equal(prompt, request.PromptIds);

        using var baseModel = new DecoderSequenceModel(model, 64);
        using var ours = request.CreateState();
        using var theirs = baseModel.CreateState();
        var a = ours.Append(prompt).ToArray();
        var b = theirs.Append(prompt).ToArray();
        for (int step = 0; step < Steps; step++)
        {
            Assert.Equal(Array.ConvertAll(b, BitConverter.SingleToInt32Bits), Array.ConvertAll(a, BitConverter.SingleToInt32Bits));
            int token = ArgMax(a);
            a = ours.Append([token]).ToArray();
            b = theirs.Append([token]).ToArray();
        }
    }

    [Fact]
    public void Each_state_starts_from_the_prompt_and_an_image_needs_a_plugin()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var host = new PluginHost(model);
        host.Attach("b", PluginFixtures.RandomBridge(model, seed: 8));
        var prompt = new MultimodalPrompt([new TextPart([1]), new ImagePart(PluginFixtures.Image(1))]);
        var request = new PluginSession(host, "b", maxSequenceLength: 64).Request(prompt, maxNewTokens: 3);
        Assert.Equal(request.PromptIds.Count + 3, request.MaxSequenceLength);
        using (var state = request.CreateState())
            Assert.Throws<InvalidOperationException>(() => state.Append([1, 2, 3]));
        // A second state prepares the prompt again and gives the same logits.
        float[] first, second;
        using (var state = request.CreateState()) first = state.Append(request.PromptIds.ToArray()).ToArray();
        using (var state = request.CreateState()) second = state.Append(request.PromptIds.ToArray()).ToArray();
        Assert.Equal(first, second);

        Assert.Throws<ArgumentException>(() => new PluginSession(host, null, 64).Request(prompt));
        Assert.Throws<KeyNotFoundException>(() => new PluginSession(host, "missing", 64));
    }

    private static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }
}
