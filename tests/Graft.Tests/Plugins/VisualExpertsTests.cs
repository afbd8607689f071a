using System.Text.Json.Nodes;
using Graft.Cli;
using Graft.Models.Llm;
using Graft.Models.Vision;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.Optim;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>Visual Experts (Mono-InternVL) against the promises, tools/reference/plugins_golden_visual_experts.py and its prompt layout.</summary>
public class VisualExpertsTests
{
    public static TheoryData<string> Families => new(PluginFixtures.Families);

    public static TheoryData<string, bool> FamiliesWithAndWithoutAttentionExperts
    {
        get
        {
            var data = new TheoryData<string, bool>();
            foreach (var family in PluginFixtures.Families)
            {
                data.Add(family, false);
                data.Add(family, true);
            }
            return data;
        }
    }

    private static readonly int[] Ids = [1, 17, 42, 9, 3, 88, 5];

    /// <summary>At most 4 tiles of 56 px: a 20 x 9 image takes 2 x 1 tiles and the thumbnail, 3 x 4 = 12 visual tokens.</summary>
    private static VisualExperts Create(DecoderModel model, int seed = 0, bool attentionExperts = false) =>
        VisualExperts.Create(model, new VisualExpertsOptions { Seed = seed, MaxTiles = 4, AttentionExperts = attentionExperts });

    /// <summary>Every tensor random and non-zero (not the initialisation: FFN_ve no longer equals FFN_t, nor attn_ve the attention).</summary>
    private static VisualExperts RandomExperts(DecoderModel model, int seed, bool attentionExperts = false)
    {
        var plugin = Create(model, seed, attentionExperts);
        var random = new Random(seed + 1000);
        foreach (var p in plugin.Parameters)
        {
            var span = p.Tensor.Span;
            for (int i = 0; i < span.Length; i++) span[i] = (float)(random.NextDouble() * 2 - 1) * 0.3f + (random.Next(2) == 0 ? -0.02f : 0.02f);
        }
        return plugin;
    }

    private static MultimodalPrompt ImagePrompt(int seed = 3) =>
        new([new TextPart([1, 17]), new ImagePart(PluginFixtures.Image(seed, 20, 9)), new TextPart([9, 3])]);

    [Theory]
    [MemberData(nameof(FamiliesWithAndWithoutAttentionExperts))]
    public void Text_only_logits_are_bit_identical_to_the_base_with_a_bridge_attached_too(string family, bool attentionExperts)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var alone = PluginFixtures.Bits(model.Forward(Ids));
        var host = new PluginHost(model);
        var experts = RandomExperts(model, 1, attentionExperts);
        host.Attach("experts", experts);
        host.Attach("bridge", PluginFixtures.RandomBridge(model, 2));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward("experts", MultimodalPrompt.FromIds(Ids))));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward("bridge", MultimodalPrompt.FromIds(Ids))));

        // Even through the plug-in's own hooks, text-only is the base by construction: every token uses the frozen FFN and attention.
        using var _ = Autograd.NoGrad();
        var input = experts.Prepare(MultimodalPrompt.FromIds(Ids));
        Assert.All(input.ImageMask, Assert.False);
        Assert.Equal(alone, PluginFixtures.Bits(model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks)));

        // The same plug-in does change a request with an image, also on the text after it.
        var withImage = experts.Prepare(ImagePrompt());
        var logits = model.ForwardEmbeddings(withImage.Embeddings, hooks: withImage.Hooks);
        var baseFfn = model.ForwardEmbeddings(withImage.Embeddings);
        Assert.NotEqual(PluginFixtures.Bits(Ops.Slice(baseFfn, 0, withImage.Length - 2, 2)), PluginFixtures.Bits(Ops.Slice(logits, 0, withImage.Length - 2, 2)));
    }

    [Fact]
    public void Text_routing_through_the_plugin_is_refused_since_text_always_takes_the_frozen_ffn()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var experts = RandomExperts(model, 1);
        Assert.False(experts.CanRouteText);
        Assert.Contains("does nothing to text", Assert.Throws<ArgumentException>(() => new PluginHost(model).Attach("experts", experts, TextRoute.Plugin)).Message);
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("internlm2")]
    public void A_training_step_changes_every_part_of_the_plugin_and_never_a_base_weight(string family)
    {
        string folder = PluginFixtures.ModelFolder(family);
        string filesBefore = PluginFixtures.HashFolder(folder);
        using var model = DecoderModel.Load(folder);
        string before = PluginFixtures.HashWeights(model);
        var experts = RandomExperts(model, 5, attentionExperts: true);
        var weightsBefore = experts.Parameters.Select(p => p.Tensor.ToArray()).ToList();

        var prompt = new MultimodalPrompt([new TextPart([1, 17]), new ImagePart(PluginFixtures.Image(9, 20, 9)), new TextPart([9, 3]), new TextPart([88, 5, 6], IsAssistant: true)]);
        var input = experts.Prepare(prompt);
        Ops.CrossEntropy(model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks), input.Targets).Backward();
        new AdamW([new ParameterGroup(experts.Parameters.Select(p => p.Tensor).ToList(), 1e-2f, 0.01f)]).Step();

        Assert.All(experts.Parameters, p => Assert.NotNull(p.Tensor.Grad));
        Assert.All(model.Weights.All(), t => Assert.Null(t.Grad));
        var changed = experts.Parameters.Where((p, i) => !p.Tensor.ToArray().SequenceEqual(weightsBefore[i])).Select(p => p.Part).Distinct().Order().ToArray();
        Assert.Equal(new[] { VisualExperts.AttentionExpertsPart, VisualExperts.ExpertsPart, VisualExperts.MarkersPart, VisualExperts.Mlp1Part, VisualExperts.PatchEmbeddingPart }.Order(), changed);
        Assert.Equal(before, PluginFixtures.HashWeights(model));
        Assert.Equal(filesBefore, PluginFixtures.HashFolder(folder));
    }

    /// <summary>
    /// At initialisation FFN_ve = FFN_t (and attn_ve = the attention), so the plug-in's logits equal the base's decoder run
    /// on the same input embeddings with every token through the base's weights, within 1e-5 (the promise). Without
    /// attention experts they are in fact equal bit for bit on all three tiny bases (F32, BF16 and F16 weights; the F32
    /// copy of a half weight holds the same values): the gathered rows go through the same GEMM kernels, and no output
    /// row's sums depend on the other rows, so gather/scatter changes no summation order. With attention experts that
    /// holds on the F32 and BF16 bases; the F16 one (InternLM2) runs its F32 copies of q, k, v and o through another
    /// kernel than its half weights, whose sums round differently in the last bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(FamiliesWithAndWithoutAttentionExperts))]
    public void At_initialisation_the_multimodal_logits_equal_the_base_decoder_on_the_same_embeddings(string family, bool attentionExperts)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var experts = Create(model, 2, attentionExperts);
        using var _ = Autograd.NoGrad();
        var input = experts.Prepare(ImagePrompt());
        var plugin = model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks);
        var reference = model.ForwardEmbeddings(input.Embeddings);
        TensorAssert.Close(reference, plugin, rtol: 1e-5f, atol: 1e-5f, what: $"{family} identity at initialisation");
        if (!attentionExperts || model.Weights.Layers[0].Query.DType != DType.F16)
            Assert.Equal(PluginFixtures.Bits(reference), PluginFixtures.Bits(plugin));
    }

    [Fact]
    public void Ffn_by_token_forward_and_gradients_match_pytorch()
    {
        using var golden = GoldenCase.Open("plugins_visual_experts", "ffn_by_token");
        var normed = golden.Input("normed", trainable: true);
        var mask = Array.ConvertAll(golden.Integers("mask"), m => m != 0);
        var text = new ExpertFeedForward(golden.Input("text_gate"), golden.Input("text_up"), golden.Input("text_down"));
        var expert = new ExpertFeedForward(golden.Input("gate", true), golden.Input("up", true), golden.Input("down", true));
        var textRows = new List<int>();
        var imageRows = new List<int>();
        var y = VisualExperts.ByToken(normed, mask,
            x => { textRows.Add(x.Shape[0]); return text.Forward(x); },
            x => { imageRows.Add(x.Shape[0]); return expert.Forward(x); });
        Assert.Equal([mask.Count(m => !m)], textRows);
        Assert.Equal([mask.Count(m => m)], imageRows);
        TensorAssert.Close(golden.Expected("y"), y, rtol: 1e-5f, atol: 1e-5f, what: "y");
        Ops.Sum(Ops.Mul(y, golden.Input("upstream"))).Backward();
        TensorAssert.Close(golden.ExpectedGrad("normed"), normed.Grad!, rtol: 1e-4f, atol: 1e-5f, what: "dn");
        TensorAssert.Close(golden.ExpectedGrad("gate"), expert.Gate.Grad!, rtol: 1e-4f, atol: 1e-5f, what: "dgate");
        TensorAssert.Close(golden.ExpectedGrad("up"), expert.Up.Grad!, rtol: 1e-4f, atol: 1e-5f, what: "dup");
        TensorAssert.Close(golden.ExpectedGrad("down"), expert.Down.Grad!, rtol: 1e-4f, atol: 1e-5f, what: "ddown");
    }

    /// <summary>
    /// The whole stream with attention and FFN experts on the tiny Qwen2 (q/k/v biases, grouped-query attention) against
    /// the paper's dense form in PyTorch: logits, and gradients for the visual rows and every expert tensor.
    /// </summary>
    [Fact]
    public void Attention_experts_forward_and_gradients_match_pytorch()
    {
        using var golden = GoldenCase.Open("plugins_visual_experts", "attention_experts_qwen2");
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var experts = Create(model, attentionExperts: true);
        int copied = 0;
        foreach (var p in experts.Parameters.Where(p => golden.Has("in." + p.Name)))
        {
            golden.Input(p.Name).Span.CopyTo(p.Tensor.Span);
            copied++;
        }
        // Per layer: q, k, v with biases, o without, and the FFN's gate, up and down.
        Assert.Equal(2 * (6 + 1 + 3), copied);
        int[] Ints(string arg) => golden.Args.GetProperty(arg).EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var (before, after) = (Ints("ids_a"), Ints("ids_b"));
        var rows = golden.Input("visual_rows", trainable: true);
        var embeddings = Ops.Concat([model.Embed(before), rows, model.Embed(after)], 0);
        bool[] mask = [.. Enumerable.Repeat(false, before.Length), .. Enumerable.Repeat(true, rows.Shape[0]), .. Enumerable.Repeat(false, after.Length)];
        var logits = model.ForwardEmbeddings(embeddings, hooks: experts.HooksFor(mask));
        TensorAssert.Close(golden.Expected("logits"), logits, rtol: 1e-4f, atol: 1e-4f, what: "logits");
        Ops.Sum(Ops.Mul(logits, golden.Input("upstream"))).Backward();
        TensorAssert.Close(golden.ExpectedGrad("visual_rows"), rows.Grad!, rtol: 1e-3f, atol: 1e-4f, what: "dvisual_rows");
        int compared = 0;
        foreach (var p in experts.Parameters.Where(p => golden.Has("grad." + p.Name)))
        {
            TensorAssert.Close(golden.ExpectedGrad(p.Name), p.Tensor.Grad!, rtol: 1e-3f, atol: 1e-4f, what: $"d{p.Name}");
            compared++;
        }
        Assert.Equal(copied, compared);
        Assert.All(model.Weights.All(), t => Assert.Null(t.Grad));
    }

    [Fact]
    public void Attention_by_token_runs_only_where_a_plugin_asks_for_it()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        using var _ = Autograd.NoGrad();
        var embeddings = model.Embed(Ids);
        var counting = new CountingHooks(projects: false);
        Assert.Equal(PluginFixtures.Bits(model.ForwardEmbeddings(embeddings)), PluginFixtures.Bits(model.ForwardEmbeddings(embeddings, hooks: counting)));
        Assert.Equal(0, counting.Projections);
        counting = new CountingHooks(projects: true);
        Assert.Equal(PluginFixtures.Bits(model.ForwardEmbeddings(embeddings)), PluginFixtures.Bits(model.ForwardEmbeddings(embeddings, hooks: counting)));
        Assert.Equal(4 * model.Config.NumLayers, counting.Projections);

        var plain = Create(model);
        Assert.False(plain.HooksFor([true, true]).ProjectsAttention(0));
        Assert.True(Create(model, attentionExperts: true).HooksFor([true, true]).ProjectsAttention(0));
    }

    /// <summary>Hooks that count the attention projections asked of them and pass the base's through.</summary>
    private sealed class CountingHooks(bool projects) : DecoderHooks
    {
        public int Projections { get; private set; }

        public override bool ProjectsAttention(int layer) => projects;

        public override Tensor ProjectAttention(int layer, AttentionProjection projection, Tensor input, Func<Tensor, Tensor> baseProjection, ReadOnlySpan<int> positions)
        {
            Projections++;
            return baseProjection(input);
        }
    }

    [Fact]
    public void Ffn_by_token_with_one_modality_runs_that_expert_alone_on_the_input_itself()
    {
        var x = Tensor.FromArray([1f, 2, 3, 4, 5, 6], 3, 2);
        Tensor Text(Tensor t) => Ops.Scale(t, 2f);
        Tensor Image(Tensor t) => Ops.Scale(t, -1f);
        Assert.Equal([2f, 4, 6, 8, 10, 12], VisualExperts.ByToken(x, [false, false, false], Text, Image).ToArray());
        Assert.Equal([-1f, -2, -3, -4, -5, -6], VisualExperts.ByToken(x, [true, true, true], Text, Image).ToArray());
        Assert.Equal([2f, 4, -3, -4, 10, 12], VisualExperts.ByToken(x, [false, true, false], Text, Image).ToArray());
        Assert.Throws<ArgumentException>(() => VisualExperts.ByToken(x, [true, false], Text, Image));
    }

    [Fact]
    public void Front_end_forward_and_gradients_match_pytorch()
    {
        using var golden = GoldenCase.Open("plugins_visual_experts", "front_end");
        int patch = golden.Int("patch"), grid = golden.Int("grid");
        var names = new[] { "conv_weight", "conv_bias", "position", "norm_weight", "norm_bias", "w1", "b1", "w2", "b2" };
        var t = names.ToDictionary(n => n, n => golden.Input(n, trainable: true));
        var frontEnd = new PatchEmbeddingFrontEnd(patch, grid, new LinearWeights(t["conv_weight"], t["conv_bias"]), t["position"],
            new LayerNormWeights(t["norm_weight"], t["norm_bias"], 1e-5f), new LinearWeights(t["w1"], t["b1"]), new LinearWeights(t["w2"], t["b2"]), t.Values.ToArray());
        var y = frontEnd.Forward(golden.Input("pixels"));
        TensorAssert.Close(golden.Expected("y"), y, rtol: 1e-4f, atol: 1e-5f, what: "tokens");
        Ops.Sum(Ops.Mul(y, golden.Input("upstream"))).Backward();
        foreach (var name in names)
            TensorAssert.Close(golden.ExpectedGrad(name), t[name].Grad!, rtol: 1e-3f, atol: 1e-4f, what: $"d{name}");
    }

    [Fact]
    public void Prepare_lays_out_markers_visual_tokens_and_text_and_masks_the_visual_tokens_only()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var experts = RandomExperts(model, 1);
        var image = PluginFixtures.Image(2, 20, 9);
        var prompt = new MultimodalPrompt([new TextPart([1, 17]), new ImagePart(image), new TextPart([9]), new TextPart([88, 5], IsAssistant: true)]);
        using var _ = Autograd.NoGrad();
        var input = experts.Prepare(prompt);

        Assert.Equal(56, experts.Tiling.ImageSize);
        Assert.Equal(4, experts.TokensPerTile);
        const int visual = 12; // 2 x 1 tiles + thumbnail, 4 tokens each
        Assert.Equal([2 + 1 + visual + 1 + 3, 64], input.Embeddings.Shape);
        Assert.Equal(Enumerable.Range(0, input.Length).Select(i => i >= 3 && i < 3 + visual), input.ImageMask);
        var targets = Enumerable.Repeat(-100, input.Length).ToArray();
        (targets[^3], targets[^2]) = (88, 5);
        Assert.Equal(targets, input.Targets);
        Assert.Equal(model.Embed([1, 17]).ToArray(), Ops.Slice(input.Embeddings, 0, 0, 2).ToArray());
        Assert.Equal(experts.Markers.ToArray()[..64], Ops.Slice(input.Embeddings, 0, 2, 1).ToArray());
        Assert.Equal(experts.EncodeImage(image).ToArray(), Ops.Slice(input.Embeddings, 0, 3, visual).ToArray());
        Assert.Equal(experts.Markers.ToArray()[64..], Ops.Slice(input.Embeddings, 0, 3 + visual, 1).ToArray());
        Assert.Equal(model.Embed([9, 88, 5]).ToArray(), Ops.Slice(input.Embeddings, 0, 4 + visual, 3).ToArray());

        var features = new MultimodalPrompt([new TextPart([1]), new ImagePart(Tensor.Zeros(4, 12))]);
        Assert.Contains("give the image as pixels", Assert.Throws<ArgumentException>(() => experts.Prepare(features)).Message);
    }

    [Theory]
    [InlineData("llama", false)]
    [InlineData("qwen2", false)]
    [InlineData("llama", true)]
    [InlineData("qwen2", true)]
    public void A_multimodal_prompt_decodes_with_the_cache_as_it_recomputes_even_when_a_chunk_splits_the_image(string family, bool attentionExperts)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var experts = RandomExperts(model, 1, attentionExperts);
        using var _ = Autograd.NoGrad();
        var input = experts.Prepare(ImagePrompt());
        var hooks = input.Hooks!;
        int n = input.Length, split = 8;
        var cache = new KvCache(model.Config, 32);
        var first = model.ForwardEmbeddings(Ops.Slice(input.Embeddings, 0, 0, split), cache, hooks: hooks);
        var second = model.ForwardEmbeddings(Ops.Slice(input.Embeddings, 0, split, n - split), cache, hooks: hooks);
        var step = model.ForwardEmbeddings(model.Embed([42]), cache, hooks: hooks);
        var full = model.ForwardEmbeddings(Ops.Concat([input.Embeddings, model.Embed([42])], 0), hooks: hooks);
        TensorAssert.Close(Ops.Slice(full, 0, 0, split), first, rtol: 1e-5f, atol: 1e-5f, what: "first chunk");
        TensorAssert.Close(Ops.Slice(full, 0, split, n - split), second, rtol: 1e-5f, atol: 1e-5f, what: "second chunk");
        TensorAssert.Close(Ops.Slice(full, 0, n, 1), step, rtol: 1e-5f, atol: 1e-5f, what: "decode step");
        var plain = model.ForwardEmbeddings(Ops.Concat([input.Embeddings, model.Embed([42])], 0));
        Assert.NotEqual(PluginFixtures.Bits(Ops.Slice(plain, 0, n, 1)), PluginFixtures.Bits(step));
    }

    [Fact]
    public void Save_and_load_give_bit_identical_outputs_and_refuse_what_does_not_fit()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        var experts = RandomExperts(model, 3, attentionExperts: true);
        using var folder = new TempFolder();
        string path = folder.Sub("experts.graft");
        var manifest = PluginFile.Save(experts, path);
        Assert.Null(manifest.Vision);
        Assert.Equal(4, manifest.HyperParameter<int>("max_tiles", "test"));
        Assert.Equal(3, manifest.Training["stages"]!.AsArray().Count);
        Assert.Contains(VisualExperts.AttentionExpertsPart, manifest.Training["stages"]![2]!["trains"]!.AsArray().Select(n => n!.GetValue<string>()));
        Assert.True(manifest.HyperParameter<bool>("attention_experts", "test"));
        var loaded = Assert.IsType<VisualExperts>(PluginFile.Load(path, model));
        Assert.Equal(experts.Parameters.Select(p => (p.Name, p.Part)), loaded.Parameters.Select(p => (p.Name, p.Part)));
        using (Autograd.NoGrad())
        {
            var before = experts.Prepare(ImagePrompt());
            var after = loaded.Prepare(ImagePrompt());
            Assert.Equal(PluginFixtures.Bits(model.ForwardEmbeddings(before.Embeddings, hooks: before.Hooks)),
                PluginFixtures.Bits(model.ForwardEmbeddings(after.Embeddings, hooks: after.Hooks)));
        }

        Assert.Contains("expects no vision front end", Assert.Throws<PluginCompatibilityException>(() => PluginFile.Load(path, model, PluginFixtures.Vision())).Message);

        string tensors = Path.Combine(path, PluginFile.TensorsFileName);
        var original = File.ReadAllBytes(tensors);
        var misShaped = experts.Parameters.Select(p => KeyValuePair.Create(p.Name,
            p.Name == "layers.1.ffn_ve.up.weight" ? Tensor.Zeros(p.Tensor.Shape[0] - 1, p.Tensor.Shape[1]) : p.Tensor));
        SafeTensorsWriter.Write(tensors, misShaped);
        var error = Assert.Throws<PluginFormatException>(() => PluginFile.Load(path, model));
        Assert.Contains("layers.1.ffn_ve.up.weight", error.Message);
        Assert.Contains("plugin.json implies [160, 64]", error.Message);
        SafeTensorsWriter.Write(tensors, experts.Parameters.Where(p => p.Name != "mlp1.3.bias").Select(p => KeyValuePair.Create(p.Name, p.Tensor)));
        Assert.Contains("mlp1.3.bias", Assert.Throws<PluginFormatException>(() => PluginFile.Load(path, model)).Message);
        File.WriteAllBytes(tensors, original);

        string json = Path.Combine(path, PluginManifest.FileName);
        var root = JsonNode.Parse(File.ReadAllText(json))!;
        root["hyper_parameters"]!["attention_experts"] = false;
        File.WriteAllText(json, root.ToJsonString());
        Assert.Contains("layers.0.attn_ve.q.weight", Assert.Throws<PluginFormatException>(() => PluginFile.Load(path, model)).Message);
        root["hyper_parameters"]!["attention_experts"] = true;
        root["hyper_parameters"]!["o_proj_bias"] = true;
        File.WriteAllText(json, root.ToJsonString());
        Assert.Contains("layers.0.attn_ve.o.bias", Assert.Throws<PluginFormatException>(() => PluginFile.Load(path, model)).Message);
        root["hyper_parameters"]!["o_proj_bias"] = false;
        root["hyper_parameters"]!["image_size"] = 50;
        File.WriteAllText(json, root.ToJsonString());
        Assert.Contains("hyper_parameters.image_size", Assert.Throws<PluginFormatException>(() => PluginFile.Load(path, model)).Message);
    }

    [Fact]
    public void Creation_copies_each_layer_ffn_into_f32_experts_and_scales_the_tile_to_the_base()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("internlm2"));
        var a = Create(model, 4);
        var b = Create(model, 4);
        var c = Create(model, 5);
        Assert.Equal(model.Config.NumLayers, a.Experts.Count);
        for (int i = 0; i < a.Experts.Count; i++)
        {
            var layer = model.Weights.Layers[i];
            Assert.Equal(DType.F16, layer.Gate.DType);
            Assert.Equal(layer.Gate.ToArray(), a.Experts[i].Gate.ToArray());
            Assert.Equal(layer.Up.ToArray(), a.Experts[i].Up.ToArray());
            Assert.Equal(layer.Down.ToArray(), a.Experts[i].Down.ToArray());
            Assert.True(a.Experts[i].Gate.DType == DType.F32 && a.Experts[i].Gate.RequiresGrad);
        }
        Assert.All(a.Parameters, p => Assert.True(p.Tensor.RequiresGrad && p.Tensor.DType == DType.F32));
        Assert.Equal(a.FrontEnd.PatchEmbedding.Weight.ToArray(), b.FrontEnd.PatchEmbedding.Weight.ToArray());
        Assert.NotEqual(a.FrontEnd.PatchEmbedding.Weight.ToArray(), c.FrontEnd.PatchEmbedding.Weight.ToArray());
        float bound = 1f / MathF.Sqrt(3 * 14 * 14);
        Assert.All(a.FrontEnd.PatchEmbedding.Weight.ToArray(), v => Assert.InRange(v, -bound, bound));
        Assert.Equal([64, 3, 14, 14], a.FrontEnd.PatchEmbedding.Weight.Shape);
        Assert.Equal([17, 64], a.FrontEnd.PositionEmbedding.Shape);
        Assert.Equal(56, VisualExperts.DefaultImageSize(64));
        Assert.Equal(448, VisualExperts.DefaultImageSize(2048));
        Assert.Equal(12, VisualExperts.Create(model).Tiling.MaxTiles);
        Assert.Throws<ArgumentException>(() => VisualExperts.Create(model, new VisualExpertsOptions { ImageSize = 42 }));
    }

    [Fact]
    public void Plugin_new_creates_one_from_the_cli_and_inspect_reports_its_parts()
    {
        string modelFolder = PluginFixtures.ModelFolder("qwen2");
        using var folder = new TempFolder();
        string path = folder.Sub("ve.graft");
        var output = new StringWriter();
        Assert.Equal(0, PluginCommand.RunNew(new PluginNewSettings(VisualExperts.DesignName, modelFolder, null, path) { Seed = 7 }, output));
        Assert.Contains("4 tokens per tile, up to 12 tiles", output.ToString());
        using var model = DecoderModel.Load(modelFolder);
        var loaded = Assert.IsType<VisualExperts>(PluginFile.Load(path, model));
        Assert.Equal(loaded.Experts[0].Gate.ToArray(), model.Weights.Layers[0].Gate.ToArray());
        var inspect = new StringWriter();
        PluginCommand.RunInspect(path, inspect);
        Assert.Contains("ffn_ve:", inspect.ToString());
        Assert.Contains("patch_embedding:", inspect.ToString());
        Assert.Contains("--vision", Assert.Throws<ArgumentException>(() =>
            PluginCommand.RunNew(new PluginNewSettings(VisualExperts.DesignName, modelFolder, "patch-pixels:2:2", folder.Sub("x.graft")), TextWriter.Null)).Message);
        Assert.Contains("--tune", Assert.Throws<ArgumentException>(() =>
            PluginCommand.RunNew(new PluginNewSettings(VisualExperts.DesignName, modelFolder, null, folder.Sub("y.graft")) { Tune = "full" }, TextWriter.Null)).Message);
    }
}
