using System.CommandLine;
using System.Text.Json.Nodes;
using Graft.Cli;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Vision;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.Optim;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Models;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>MMA (LaVIN) against tools/reference/plugins_golden_mma.py, and the promises of a plug-in that acts on every layer.</summary>
public class MmaTests
{
    private const string Golden = "plugins_mma";
    private static readonly int[] Ids = [1, 17, 42, 9, 3, 88, 5];

    public static TheoryData<string> Families => new(PluginFixtures.Families);

    public static TheoryData<string> AdapterCases => new(["adapter_width16", "adapter_width12_scaled"]);

    public static TheoryData<string> StreamCases => new(["stream_qwen2_image", "stream_qwen2_text"]);

    /// <summary>The 3-block test CLIP tower (so 3 class tokens of width 32) with its preprocessor.</summary>
    private static MmaClipFrontEnd ClipFrontEnd()
    {
        string folder = VisionGoldenTests.ModelFolder("clip_vision");
        return new MmaClipFrontEnd(VisionEncoder.Load(folder), ImageProcessorConfig.Load(Path.Combine(folder, "preprocessor_config.json")));
    }

    /// <summary>An MMA whose every tensor is random and non-zero (not its identity initialisation).</summary>
    private static Mma RandomMma(DecoderModel model, IVisionFrontEnd vision, int seed)
    {
        var mma = Mma.Create(model, vision, new MmaOptions { Seed = seed });
        var random = new Random(seed + 1000);
        foreach (var p in mma.Parameters)
        {
            var span = p.Tensor.Span;
            for (int i = 0; i < span.Length; i++) span[i] = (float)(random.NextDouble() * 2 - 1) * 0.5f + (random.Next(2) == 0 ? -0.05f : 0.05f);
        }
        return mma;
    }

    private static MultimodalPrompt ImagePrompt(int seed = 3) =>
        new([new TextPart([1, 17]), new ImagePart(PluginFixtures.Image(seed)), new TextPart([9, 3]), new TextPart([88, 5, 6], IsAssistant: true)]);

    private static RepAdapterShape ShapeOf(GoldenCase golden) =>
        new(golden.Int("rank"), golden.Int("groups"), golden.Float("temperature"), golden.Float("scale"), 0.1f);

    private static RoutedRepAdapter AdapterFrom(GoldenCase golden, string prefix = "") => new(
        golden.Input(prefix + "conv_A.weight", true), golden.Input(prefix + "conv_A.bias", true), golden.Input(prefix + "conv_B.weight", true),
        golden.Input(prefix + "conv_B.bias", true), golden.Input(prefix + "conv_D.weight", true), golden.Input(prefix + "conv_D.bias", true),
        golden.Input(prefix + "expert_weights.weight", true), golden.Input(prefix + "expert_weights.bias", true), ShapeOf(golden));

    private static void AssertAdapterGrads(GoldenCase golden, RoutedRepAdapter adapter, string name)
    {
        foreach (var (suffix, tensor) in adapter.Named())
            TensorAssert.Close(golden.ExpectedGrad(suffix), tensor.Grad!, rtol: 1e-4f, atol: 1e-5f, what: $"{name} d{suffix}");
    }

    // (4) Modules against PyTorch.

    [Theory]
    [MemberData(nameof(AdapterCases))]
    public void Routed_adapter_forward_and_gradients_match_pytorch(string name)
    {
        using var golden = GoldenCase.Open(Golden, name);
        var adapter = AdapterFrom(golden);
        var x = golden.Input("x", trainable: true);
        var y = adapter.Forward(x, adapter.Route(Ops.Slice(x, 0, 0, 1)), training: false, new Random(0));
        TensorAssert.Close(golden.Expected("y"), y, rtol: 1e-5f, atol: 1e-5f, what: $"{name} y");
        Ops.Sum(Ops.Mul(y, golden.Input("upstream"))).Backward();
        TensorAssert.Close(golden.ExpectedGrad("x"), x.Grad!, rtol: 1e-4f, atol: 1e-5f, what: $"{name} dx");
        AssertAdapterGrads(golden, adapter, name);
    }

    [Fact]
    public void Vit_adapter_routes_each_image_by_its_own_class_token_as_pytorch_does()
    {
        using var golden = GoldenCase.Open(Golden, "adapter_vit_batch3");
        var adapter = AdapterFrom(golden);
        var x = golden.Input("x", trainable: true);
        var y = adapter.ForwardEach(x, training: false, new Random(0));
        TensorAssert.Close(golden.Expected("y"), y, rtol: 1e-5f, atol: 1e-5f, what: "batch y");
        // LaVIN's original (every image routed by image 0) is measurably different on images 1 and 2.
        var original = golden.Expected("y_routed_from_image_0");
        Assert.True(Ops.Slice(original, 0, 1, 2).ToArray().Zip(Ops.Slice(y, 0, 1, 2).ToArray()).Max(p => MathF.Abs(p.First - p.Second)) > 1e-3f);
        Ops.Sum(Ops.Mul(y, golden.Input("upstream"))).Backward();
        TensorAssert.Close(golden.ExpectedGrad("x"), x.Grad!, rtol: 1e-4f, atol: 1e-5f, what: "batch dx");
        AssertAdapterGrads(golden, adapter, "batch");
    }

    [Fact]
    public void Adapter_mlp_forward_and_gradients_match_pytorch()
    {
        using var golden = GoldenCase.Open(Golden, "adapter_mlp");
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var mma = Mma.Create(model, PluginFixtures.Vision(), new MmaOptions { ProjectionWidth = 16 });
        golden.Input("w1").Span.CopyTo(mma.W1.Span);
        golden.Input("b1").Span.CopyTo(mma.B1.Span);
        golden.Input("w2").Span.CopyTo(mma.W2.Span);
        golden.Input("b2").Span.CopyTo(mma.B2.Span);
        var features = golden.Input("features", trainable: true);
        var y = mma.Project(features);
        TensorAssert.Close(golden.Expected("y"), y, rtol: 1e-5f, atol: 1e-5f, what: "mlp y");
        Ops.Sum(Ops.Mul(y, golden.Input("upstream"))).Backward();
        TensorAssert.Close(golden.ExpectedGrad("features"), features.Grad!, rtol: 1e-4f, atol: 1e-5f, what: "mlp dZ");
        TensorAssert.Close(golden.ExpectedGrad("w1"), mma.W1.Grad!, rtol: 1e-4f, atol: 1e-5f, what: "mlp dW1");
        TensorAssert.Close(golden.ExpectedGrad("b1"), mma.B1.Grad!, rtol: 1e-4f, atol: 1e-5f, what: "mlp db1");
        TensorAssert.Close(golden.ExpectedGrad("w2"), mma.W2.Grad!, rtol: 1e-4f, atol: 1e-5f, what: "mlp dW2");
        TensorAssert.Close(golden.ExpectedGrad("b2"), mma.B2.Grad!, rtol: 1e-4f, atol: 1e-5f, what: "mlp db2");
    }

    [Theory]
    [MemberData(nameof(StreamCases))]
    public void The_whole_stream_through_the_qwen2_checkpoint_matches_pytorch_with_gradients(string name)
    {
        using var golden = GoldenCase.Open(Golden, name);
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(golden.String("family")));
        var mma = Mma.Create(model, PluginFixtures.Vision(), new MmaOptions
        {
            AdapterRank = golden.Int("rank"), AdapterGroups = golden.Int("groups"), Temperature = golden.Float("temperature"),
            AdapterScale = golden.Float("scale"), ProjectionWidth = golden.Int("projection_width"),
        });
        foreach (var p in mma.Parameters) golden.Input(p.Name).Span.CopyTo(p.Tensor.Span);
        var parts = new List<PromptPart> { new TextPart(golden.Integers("ids1")) };
        if (golden.Bool("with_image")) parts.Add(new ImagePart(golden.Input("features")));
        parts.Add(new TextPart(golden.Integers("ids2")));

        var input = mma.Prepare(new MultimodalPrompt(parts));
        var logits = model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks);
        TensorAssert.Close(golden.Expected("logits"), logits, rtol: 1e-4f, atol: 1e-4f, what: $"{name} logits");
        Ops.Sum(Ops.Mul(logits, golden.Input("upstream"))).Backward();
        int checkedGrads = 0;
        foreach (var p in mma.Parameters)
        {
            if (!golden.Has("grad." + p.Name))
            {
                Assert.Null(p.Tensor.Grad); // text-only: AdapterMLP is not on the path
                continue;
            }
            TensorAssert.Close(golden.ExpectedGrad(p.Name), p.Tensor.Grad!, rtol: 1e-3f, atol: 1e-4f, what: $"{name} d{p.Name}");
            checkedGrads++;
        }
        Assert.True(checkedGrads >= 17, $"{checkedGrads} gradients compared");
    }

    // (1) and (7) Text-only: the base bit for bit by default; through the adapters on request.

    [Theory]
    [MemberData(nameof(Families))]
    public void Text_only_logits_are_bit_identical_to_the_base_with_mma_and_a_bridge_attached(string family)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var alone = PluginFixtures.Bits(model.Forward(Ids));
        var host = new PluginHost(model);
        var mma = RandomMma(model, PluginFixtures.Vision(), seed: 1);
        host.Attach("mma", mma);
        host.Attach("bridge", PluginFixtures.RandomBridge(model, seed: 2));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward("mma", MultimodalPrompt.FromIds(Ids))));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward("bridge", MultimodalPrompt.FromIds(Ids))));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward(null, MultimodalPrompt.FromIds(Ids))));

        // The same plug-in changes the text of a request with an image (one more position: the modality token).
        var withImage = host.Forward("mma", new MultimodalPrompt([new TextPart(Ids), new ImagePart(PluginFixtures.Image(3))]));
        Assert.Equal(1 + Ids.Length + 4, withImage.Shape[0]);
        Assert.NotEqual(PluginFixtures.Bits(Ops.Slice(model.Forward(Ids), 0, 0, Ids.Length)), PluginFixtures.Bits(Ops.Slice(withImage, 0, 1, Ids.Length)));
    }

    [Fact]
    public void Text_routed_through_the_plugin_differs_from_the_base_and_uses_modality_zero()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        var mma = RandomMma(model, PluginFixtures.Vision(), seed: 4);
        var routed = new PluginHost(model);
        routed.Attach("mma", mma, TextRoute.Plugin);
        var plain = new PluginHost(model);
        plain.Attach("mma", mma);

        var baseLogits = model.Forward(Ids);
        var viaPlugin = routed.Forward("mma", MultimodalPrompt.FromIds(Ids));
        Assert.Equal([1 + Ids.Length, model.Config.VocabSize], viaPlugin.Shape);
        var difference = Ops.Slice(viaPlugin, 0, 1, Ids.Length).ToArray().Zip(baseLogits.ToArray()).Max(p => MathF.Abs(p.First - p.Second));
        Assert.True(difference > 1e-2f, $"text through the adapters moved the logits by only {difference}");
        Assert.Equal(PluginFixtures.Bits(baseLogits), PluginFixtures.Bits(plain.Forward("mma", MultimodalPrompt.FromIds(Ids))));

        using var _ = Autograd.NoGrad();
        var input = mma.Prepare(MultimodalPrompt.FromIds(Ids));
        Assert.Equal(Ops.Slice(mma.ModalityEmbedding, 0, 0, 1).ToArray(), Ops.Slice(input.Embeddings, 0, 0, 1).ToArray());
        var withImage = mma.Prepare(new MultimodalPrompt([new TextPart(Ids), new ImagePart(PluginFixtures.Image(1))]));
        Assert.Equal(Ops.Slice(mma.ModalityEmbedding, 0, 1, 1).ToArray(), Ops.Slice(withImage.Embeddings, 0, 0, 1).ToArray());
    }

    // (2) Training.

    [Fact]
    public void A_training_step_with_dropout_changes_every_part_of_the_plugin_and_never_a_base_or_tower_weight()
    {
        string folder = PluginFixtures.ModelFolder("qwen2");
        string filesBefore = PluginFixtures.HashFolder(folder);
        using var model = DecoderModel.Load(folder);
        string before = PluginFixtures.HashWeights(model);
        var vision = ClipFrontEnd();
        var towerBefore = vision.Tower.Parameters.Select(t => t.ToArray()).ToList();
        var mma = RandomMma(model, vision, seed: 5);
        mma.Training = true;
        var plugBefore = mma.Parameters.Select(p => p.Tensor.ToArray()).ToList();

        var input = mma.Prepare(ImagePrompt());
        Assert.Equal(1 + 2 + 3 + 2 + 3, input.Length);
        Assert.Equal([-100, -100, -100, -100, -100, -100, -100, 88, 5, 6, -100], input.Targets);
        var loss = Ops.CrossEntropy(model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks), input.Targets);
        loss.Backward();
        new AdamW([new ParameterGroup(mma.Parameters.Select(p => p.Tensor).ToList(), 1e-2f, 0.02f)], beta2: 0.95f).Step();

        Assert.All(mma.Parameters, p => Assert.NotNull(p.Tensor.Grad));
        foreach (var part in new[] { Mma.LlmAdaptersPart, Mma.VisionAdaptersPart, Mma.ProjectionPart, Mma.ModalityPart })
            Assert.Contains(mma.Parameters.Select((p, i) => (p, i)), x => x.p.Part == part && !x.p.Tensor.ToArray().SequenceEqual(plugBefore[x.i]));
        Assert.All(model.Weights.All(), t => Assert.Null(t.Grad));
        Assert.All(vision.Tower.Parameters, t => Assert.Null(t.Grad));
        Assert.Equal(towerBefore, vision.Tower.Parameters.Select(t => t.ToArray()).ToList());
        Assert.Equal(before, PluginFixtures.HashWeights(model));
        Assert.Equal(filesBefore, PluginFixtures.HashFolder(folder));
        Assert.Null(vision.Tower.AttentionInputHook);
    }

    [Fact]
    public void Dropout_acts_only_while_training()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var mma = RandomMma(model, PluginFixtures.Vision(), seed: 6);
        using var _ = Autograd.NoGrad();
        Tensor Run()
        {
            var input = mma.Prepare(ImagePrompt());
            return model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks);
        }
        var first = PluginFixtures.Bits(Run());
        Assert.Equal(first, PluginFixtures.Bits(Run()));
        mma.Training = true;
        Assert.NotEqual(first, PluginFixtures.Bits(Run()));
    }

    // (3) Identity at initialisation.

    [Fact]
    public void At_initialisation_the_stream_is_the_base_on_the_same_embeddings_and_mask_and_the_tower_is_untouched()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        var vision = ClipFrontEnd();
        var mma = Mma.Create(model, vision, new MmaOptions { Seed = 9 });
        var image = PluginFixtures.Image(7, 40, 30);
        using var _ = Autograd.NoGrad();
        var input = mma.Prepare(new MultimodalPrompt([new TextPart([1, 17]), new ImagePart(image), new TextPart([9, 3, 88])]));

        // B and D are zero, so every adapter is the identity: the ViT gives the frozen tower's class tokens bit for bit,
        Assert.Equal(mma.Project(vision.Encode(image)).ToArray(), Ops.Slice(input.Embeddings, 0, 3, 3).ToArray());
        // and the decoder with the adapters equals the decoder with only the modality mask, bit for bit.
        var stream = model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks);
        Assert.Equal(PluginFixtures.Bits(stream), PluginFixtures.Bits(model.ForwardEmbeddings(input.Embeddings, hooks: new ModalityMaskOnly())));
        // No later token sees the modality token, so positions 1.. are the base on the rest of the sequence (RoPE is
        // relative: only the rounding of the shifted rotation differs).
        int t = input.Length;
        var rest = model.ForwardEmbeddings(Ops.Slice(input.Embeddings, 0, 1, t - 1));
        TensorAssert.Close(rest, Ops.Slice(stream, 0, 1, t - 1), rtol: 1e-4f, atol: 1e-4f, what: "positions 1.. against the base alone");
    }

    /// <summary>The mask docs/designs.md states, with no adapter: causal, and key 0 hidden from every query after position 0.</summary>
    private sealed class ModalityMaskOnly : DecoderHooks
    {
        public override AttentionMask MaskFor(int queryOffset, int queries)
        {
            int keys = queryOffset + queries;
            var allowed = new bool[queries * keys];
            for (int i = 0; i < queries; i++)
                for (int j = 0; j < keys; j++) allowed[i * keys + j] = j > 0 || queryOffset + i == 0;
            return AttentionMask.FromAllowed(allowed, 1, queries, keys, causal: true, queryOffset);
        }
    }

    // (5) The KV cache.

    [Theory]
    [InlineData("llama")]
    [InlineData("internlm2")]
    public void Cached_decoding_equals_recomputation_with_the_routes_kept_from_the_prefill(string family)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var mma = RandomMma(model, PluginFixtures.Vision(), seed: 8);
        using var _ = Autograd.NoGrad();
        var input = mma.Prepare(ImagePrompt());
        var cache = new KvCache(model.Config, 32);
        var prefill = model.ForwardEmbeddings(input.Embeddings, cache, hooks: input.Hooks);
        var step1 = model.ForwardEmbeddings(model.Embed([42]), cache, hooks: input.Hooks);
        var step2 = model.ForwardEmbeddings(model.Embed([7]), cache, lastPositionOnly: true, hooks: input.Hooks);

        var fresh = mma.Prepare(ImagePrompt());
        var full = model.ForwardEmbeddings(Ops.Concat([fresh.Embeddings, model.Embed([42, 7])], 0), hooks: fresh.Hooks);
        int t = input.Length;
        TensorAssert.Close(Ops.Slice(full, 0, 0, t), prefill, rtol: 1e-5f, atol: 1e-5f, what: "prefill");
        TensorAssert.Close(Ops.Slice(full, 0, t, 1), step1, rtol: 1e-5f, atol: 1e-5f, what: "step 1");
        TensorAssert.Close(Ops.Slice(full, 0, t + 1, 1), step2, rtol: 1e-5f, atol: 1e-5f, what: "step 2");

        // A decode step of a request whose prefill never ran has no route to use.
        var orphan = mma.Prepare(ImagePrompt());
        var other = new KvCache(model.Config, 32);
        model.Forward([1, 2], other);
        var e = Assert.Throws<InvalidOperationException>(() => model.ForwardEmbeddings(model.Embed([42]), other, hooks: orphan.Hooks));
        Assert.Contains("reads position 0", e.Message);
    }

    // (6) Save and load.

    [Fact]
    public void Save_then_load_gives_bit_identical_outputs_on_images_and_routed_text()
    {
        using var temp = new TempFolder();
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var vision = ClipFrontEnd();
        var mma = RandomMma(model, vision, seed: 10);
        var manifest = PluginFile.Save(mma, temp.Sub("m.graft"));
        var loaded = (Mma)PluginFile.Load(temp.Sub("m.graft"), model, vision);

        var host = new PluginHost(model);
        host.Attach("saved", mma, TextRoute.Plugin);
        host.Attach("loaded", loaded, TextRoute.Plugin);
        Assert.Equal(PluginFixtures.Bits(host.Forward("saved", ImagePrompt())), PluginFixtures.Bits(host.Forward("loaded", ImagePrompt())));
        Assert.Equal(PluginFixtures.Bits(host.Forward("saved", MultimodalPrompt.FromIds(Ids))), PluginFixtures.Bits(host.Forward("loaded", MultimodalPrompt.FromIds(Ids))));
        Assert.Equal(mma.Parameters.Select(p => (p.Name, p.Part)), loaded.Parameters.Select(p => (p.Name, p.Part)));

        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(temp.Sub("m.graft"), "plugin.json")))!;
        var hyper = json["hyper_parameters"]!;
        Assert.Equal("mma", (string)json["design"]!);
        Assert.Equal(3, (int)hyper["vision_tokens"]!);
        Assert.Equal(3, (int)hyper["vision_blocks"]!);
        Assert.Equal(8, (int)hyper["adapter_rank"]!);
        Assert.Equal(5f, (float)hyper["temperature"]!);
        Assert.Equal(0.95, (double)hyper["recipe"]!["betas"]![1]!);
        Assert.Equal(MmaClipFrontEnd.KindName, manifest.Vision!.Kind);
        Assert.Equal("3", manifest.Vision.Summary["class_tokens"]);
        // 2 layers x 8 adapter tensors, 3 ViT blocks x 8, AdapterMLP 4, modality 1.
        Assert.Equal(2 * 8 + 3 * 8 + 4 + 1, mma.Parameters.Count);
    }

    [Theory]
    [InlineData("misshaped", "layers.1.adapter_attn.conv_B.weight", "has shape [64, 8], plugin.json implies [64, 4]")]
    [InlineData("missing", "backbone.visual.transformer.resblocks.2.adapter_attn.expert_weights.bias", "is missing (a mma plug-in needs it, shape [2])")]
    [InlineData("extra", "layers.2.adapter_attn.conv_A.weight", "is not a tensor of a mma plug-in")]
    public void A_missing_extra_or_misshaped_tensor_is_refused_naming_it(string fault, string tensor, string problem)
    {
        using var temp = new TempFolder();
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var vision = ClipFrontEnd();
        var mma = Mma.Create(model, vision);
        string folder = temp.Sub("m.graft");
        PluginFile.Save(mma, folder);
        var tensors = mma.Parameters.ToDictionary(p => p.Name, p => p.Tensor);
        switch (fault)
        {
            case "misshaped": tensors[tensor] = Tensor.Zeros(64, 8); break;
            case "missing": tensors.Remove(tensor); break;
            case "extra": tensors[tensor] = Tensor.Zeros(8, 64); break;
        }
        SafeTensorsWriter.Write(Path.Combine(folder, "plugin.safetensors"), tensors);
        var e = Assert.Throws<PluginFormatException>(() => PluginFile.Load(folder, model, vision));
        Assert.Equal(tensor, e.Where);
        Assert.Contains(problem, e.Problem);
    }

    [Fact]
    public void A_manifest_whose_adapter_shape_cannot_be_built_is_refused()
    {
        using var temp = new TempFolder();
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        string folder = temp.Sub("m.graft");
        PluginFile.Save(Mma.Create(model, PluginFixtures.Vision()), folder);
        string path = Path.Combine(folder, "plugin.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!;
        json["hyper_parameters"]!["adapter_rank"] = 7;
        File.WriteAllText(path, json.ToJsonString());
        var e = Assert.Throws<PluginFormatException>(() => PluginFile.Load(folder, model, PluginFixtures.Vision()));
        Assert.Contains("rank 7 is not a multiple of its 2 groups", e.Message);
    }

    // The vision side.

    [Fact]
    public void Images_batched_together_get_the_features_each_gets_alone()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var mma = RandomMma(model, ClipFrontEnd(), seed: 11);
        using var _ = Autograd.NoGrad();
        var a = PluginFixtures.Image(1, 32, 32);
        var b = PluginFixtures.Image(2, 32, 32);
        var both = mma.Prepare(new MultimodalPrompt([new TextPart([1]), new ImagePart(a), new ImagePart(b)]));
        var aloneA = mma.Prepare(new MultimodalPrompt([new TextPart([1]), new ImagePart(a)]));
        var aloneB = mma.Prepare(new MultimodalPrompt([new TextPart([1]), new ImagePart(b)]));
        Assert.Equal([false, false, true, true, true, true, true, true], both.ImageMask);
        TensorAssert.Close(Ops.Slice(aloneA.Embeddings, 0, 2, 3), Ops.Slice(both.Embeddings, 0, 2, 3), rtol: 1e-6f, atol: 1e-6f, what: "image a");
        TensorAssert.Close(Ops.Slice(aloneB.Embeddings, 0, 2, 3), Ops.Slice(both.Embeddings, 0, 5, 3), rtol: 1e-6f, atol: 1e-6f, what: "image b");
        Assert.Contains("give the image as pixels",
            Assert.Throws<ArgumentException>(() => mma.Prepare(new MultimodalPrompt([new TextPart([1]), new ImagePart(Tensor.Zeros(3, 32))]))).Message);
    }

    [Fact]
    public void Class_token_count_and_temperature_follow_lavin_where_the_depth_allows()
    {
        Assert.Equal(6, MmaClipFrontEnd.DefaultClassTokens(24));
        Assert.Equal(6, MmaClipFrontEnd.DefaultClassTokens(12));
        Assert.Equal(4, MmaClipFrontEnd.DefaultClassTokens(8));
        Assert.Equal(3, MmaClipFrontEnd.DefaultClassTokens(3));
        Assert.Equal(1, MmaClipFrontEnd.DefaultClassTokens(7));
        Assert.Equal(10f, Mma.DefaultTemperature(4096));
        Assert.Equal(5f, Mma.DefaultTemperature(5120));
    }

    // The CLI.

    [Fact]
    public void Cli_creates_an_mma_and_routes_text_through_it_only_when_asked()
    {
        using var temp = new TempFolder();
        string model = PluginFixtures.ModelFolder("qwen2");
        string plugin = temp.Sub("m.graft");
        var (code, output, error) = Cli("plugin", "new", "--design", "mma", "--base", model, "--vision", "patch-pixels:4:2", "--out", plugin, "--seed", "2");
        Assert.True(code == 0, error);
        Assert.Contains("wrote untrained mma plug-in to", output);
        Assert.Equal(0, Cli("logits", "--model", model, "--ids", "1,17,42,9", "--out", temp.Sub("base.safetensors")).ExitCode);
        Assert.Equal(0, Cli("logits", "--model", model, "--plugin", plugin, "--ids", "1,17,42,9", "--out", temp.Sub("default.safetensors")).ExitCode);
        Assert.Equal(File.ReadAllBytes(temp.Sub("base.safetensors")), File.ReadAllBytes(temp.Sub("default.safetensors")));

        // Through the plug-in, text begins with LaVIN's "Image: N/A", which needs the model's tokenizer (PromptLayoutTests runs it with one).
        (code, _, error) = Cli("logits", "--model", model, "--plugin", plugin, "--ids", "1,17,42,9", "--text-route", "plugin", "--out", temp.Sub("routed.safetensors"));
        Assert.Equal(1, code);
        Assert.Contains("needs a tokenizer.json in", error);
    }

    private static (int ExitCode, string Output, string Error) Cli(params string[] args) =>
        CliRunner.Run([PluginCommand.Create(), LogitsCommand.Create()], args);
}
