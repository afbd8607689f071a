using Graft.Models.Generation;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tests.Models;

namespace Graft.Tests.Plugins;

/// <summary>Plug-in requests in a batched decode step: each with its own hooks and cache, each row as its request decoded alone.</summary>
public class BatchedPluginDecodingTests
{
    /// <summary>
    /// Text-only requests (the base alone, through a session and through the plain decoder) next to image requests of every
    /// design, with random non-zero plug-in weights and prompts of different lengths, step together; each row is bit for bit
    /// the same request's own state stepping alone.
    /// </summary>
    [Theory]
    [InlineData("qwen2")]
    [InlineData("llama")]
    public void Text_only_and_plugin_requests_decode_together_exactly_as_alone(string family)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var host = new PluginHost(model);
        host.Attach(Bridge.DesignName, PluginFixtures.RandomBridge(model, seed: 3));
        IPlugin[] designs =
        [
            Mma.Create(model, PluginFixtures.Vision(), new MmaOptions { Seed = 21 }),
            InnerAdaptor.Create(model, PluginFixtures.Vision(), new InnerAdaptorOptions { Seed = 22 }),
            Wings.Create(model, PluginFixtures.Vision(), new WingsOptions { Seed = 23 }),
            VisualExperts.Create(model, new VisualExpertsOptions { Seed = 24, AttentionExperts = true }),
        ];
        var random = new Random(25);
        foreach (var plugin in designs)
        {
            foreach (var p in plugin.Parameters)
            {
                var span = p.Tensor.Span;
                for (int i = 0; i < span.Length; i++) span[i] += (float)(random.NextDouble() * 2 - 1) * 0.1f;
            }
            host.Attach(plugin.Design, plugin);
        }

        using var plain = new DecoderSequenceModel(model, 96);
        var requests = new List<ITokenSequenceModel> { plain, new PluginSession(host, Bridge.DesignName, 96).Request(MultimodalPrompt.FromIds([1, 17, 42, 9, 30])) };
        var prompts = new List<IReadOnlyList<int>> { new[] { 4, 8, 15, 16, 23, 42, 7 }, ((PluginRequest)requests[1]).PromptIds };
        int seed = 30;
        foreach (var design in new[] { Bridge.DesignName, Mma.DesignName, InnerAdaptor.DesignName, Wings.DesignName, VisualExperts.DesignName })
        {
            PromptPart[] parts = [new TextPart([1, 17]), new ImagePart(PluginFixtures.Image(seed++)), new TextPart(Enumerable.Range(3, seed % 5 + 1).ToArray())];
            var request = new PluginSession(host, design, 96).Request(new MultimodalPrompt(parts));
            Assert.NotNull(request.Plugin);
            requests.Add(request);
            prompts.Add(request.PromptIds);
        }

        var alone = requests.Select(r => r.CreateState()).ToArray();
        var together = requests.Select(r => r.CreateState()).ToArray();
        var tokens = new int[requests.Count];
        for (int s = 0; s < requests.Count; s++)
        {
            tokens[s] = BatchedDecodingTests.ArgMax(alone[s].Append(prompts[s].ToArray()).ToArray());
            together[s].Append(prompts[s].ToArray());
        }
        Assert.True(together.All(state => state is IDecoderSequenceState));
        for (int step = 0; step < 5; step++)
        {
            var logits = SequenceBatch.Step(together, tokens);
            for (int s = 0; s < requests.Count; s++)
            {
                var expected = alone[s].Append([tokens[s]]).ToArray();
                var row = logits.Span.Slice(s * expected.Length, expected.Length).ToArray();
                Assert.True(Array.ConvertAll(expected, BitConverter.SingleToInt32Bits).SequenceEqual(Array.ConvertAll(row, BitConverter.SingleToInt32Bits)),
                    $"step {step}, request {s}: the batched logits differ from the request decoded alone");
                tokens[s] = BatchedDecodingTests.ArgMax(expected);
            }
        }
        foreach (var state in alone.Concat(together)) state.Dispose();
    }

    /// <summary>
    /// Hooks that project attention by token act on a batched step's row as on that token decoded alone: here every
    /// projection of the decoded token is its own (the base's weights scaled), so the base's rows would not do.
    /// </summary>
    [Fact]
    public void Attention_projected_by_token_acts_in_a_batched_step_as_alone()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        var hooks = new[] { new ScaledProjections(1.1f), new ScaledProjections(0.9f) };
        var alone = hooks.Select(_ => new KvCache(model.Config, 16)).ToArray();
        var together = hooks.Select(_ => new KvCache(model.Config, 16)).ToArray();
        int[][] prompts = [[1, 17, 42], [5, 6, 7, 8]];
        for (int s = 0; s < 2; s++)
        {
            model.ForwardEmbeddings(model.Embed(prompts[s]), alone[s], hooks: hooks[s]);
            model.ForwardEmbeddings(model.Embed(prompts[s]), together[s], hooks: hooks[s]);
        }
        var batched = model.DecodeStep([new DecodeRow(9, together[0], hooks[0]), new DecodeRow(3, together[1], hooks[1])]);
        int vocabulary = model.Config.VocabSize;
        // The same prompt and token with the base's projections for the decoded token: not what the batch gave.
        var baseProjected = new KvCache(model.Config, 16);
        model.ForwardEmbeddings(model.Embed(prompts[0]), baseProjected, hooks: new ScaledProjections(1.1f));
        var plain = model.Forward([9], baseProjected, lastPositionOnly: true).ToArray();
        for (int s = 0; s < 2; s++)
        {
            var expected = model.ForwardEmbeddings(model.Embed([s == 0 ? 9 : 3]), alone[s], lastPositionOnly: true, hooks: hooks[s]).ToArray();
            var row = batched.Span.Slice(s * vocabulary, vocabulary).ToArray();
            Assert.Equal(Array.ConvertAll(expected, BitConverter.SingleToInt32Bits), Array.ConvertAll(row, BitConverter.SingleToInt32Bits));
        }
        Assert.True(hooks.All(h => h.Projections > 0));
        Assert.NotEqual(plain, batched.Span.Slice(0, vocabulary).ToArray());
    }

    /// <summary>Every attention projection of every token: the base's, scaled.</summary>
    private sealed class ScaledProjections(float scale) : DecoderHooks
    {
        public int Projections { get; private set; }

        public override bool ProjectsAttention(int layer) => true;

        public override Tensor ProjectAttention(int layer, AttentionProjection projection, Tensor input, Func<Tensor, Tensor> baseProjection, ReadOnlySpan<int> positions)
        {
            Projections++;
            return Ops.Scale(baseProjection(input), scale);
        }
    }

    [Fact]
    public void A_plugin_request_joins_a_batch_only_after_its_prompt()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var host = new PluginHost(model);
        host.Attach("b", PluginFixtures.RandomBridge(model, seed: 4));
        var request = new PluginSession(host, "b", 64).Request(new MultimodalPrompt([new TextPart([1]), new ImagePart(PluginFixtures.Image(2))]));
        using var state = request.CreateState();
        Assert.Throws<InvalidOperationException>(() => SequenceBatch.Step([state], [3]));
    }
}
