using System.Text.Json.Nodes;
using Graft.Cli;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.Optim;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>WINGS against tools/reference/plugins_golden_wings.py and the plug-in promises.</summary>
public class WingsTests
{
    public static TheoryData<string> Families => new(PluginFixtures.Families);
    public static TheoryData<string> LayerCases => GoldenCase.Names("plugins_wings");

    public static TheoryData<string, WingsRouterInput> FamiliesAndRouters()
    {
        var data = new TheoryData<string, WingsRouterInput>();
        foreach (var family in PluginFixtures.Families)
            foreach (var input in Enum.GetValues<WingsRouterInput>()) data.Add(family, input);
        return data;
    }

    private static readonly int[] Ids = [1, 17, 42, 9, 3, 88, 5];

    private static MultimodalPrompt ImagePrompt(params int[] tail) =>
        new([new TextPart([5, 17]), new ImagePart(PluginFixtures.Image(2)), new TextPart([9, 3, .. tail])]);

    /// <summary>Every weight random and non-zero (B included, so the learners act), small enough to keep logits tame.</summary>
    private static Wings RandomWings(DecoderModel model, int seed, WingsRouterInput input = WingsRouterInput.ImageTextMass, int rowLength = 32)
    {
        var wings = Wings.Create(model, PluginFixtures.Vision(), new WingsOptions { Seed = seed, RouterInput = input, RouterRowLength = rowLength });
        var random = new Random(seed + 1000);
        foreach (var p in wings.Parameters)
        {
            var span = p.Tensor.Span;
            for (int i = 0; i < span.Length; i++) span[i] = (float)(random.NextDouble() * 2 - 1) * 0.3f + (random.Next(2) == 0 ? -0.05f : 0.05f);
        }
        return wings;
    }

    [Theory]
    [MemberData(nameof(LayerCases))]
    public void Layer_forward_and_gradients_match_pytorch(string name)
    {
        using var golden = GoldenCase.Open("plugins_wings", name);
        int heads = golden.Int("heads");
        var input = Wings.ParseRouterInput(golden.String("router_input"), name);
        LorraLearner Learner(string prefix) => new(
            LorraLearner.Projections.Select(p => golden.Input($"{prefix}.{p}.a", true)).ToArray(),
            LorraLearner.Projections.Select(p => golden.Input($"{prefix}.{p}.b", true)).ToArray(), heads);
        var layer = new WingsLayer(Learner("visual"), Learner("textual"), new WingsRouter(golden.Input("router.weight", true), golden.Input("router.bias", true), input));
        var hidden = golden.Input("hidden", true);
        var fImg = golden.Input("f_img", true);
        var fTxt = golden.Input("f_txt", true);
        var attention = golden.Input("attention", true);
        int[] positions = golden.Integers("positions");
        bool[] isImage = Array.ConvertAll(golden.Integers("image_mask"), v => v != 0);
        int[] imagePositions = Enumerable.Range(0, isImage.Length).Where(i => isImage[i]).ToArray();
        int[] textPositions = Enumerable.Range(0, isImage.Length).Where(i => !isImage[i]).ToArray();
        var rope = RotaryEmbedding.Default(hidden.Shape[1] / heads, golden.Float("theta"));

        var y = layer.Forward(hidden, attention, positions, layer.Visual.KeysValues(fImg, imagePositions, rope),
            layer.Textual.KeysValues(fTxt, textPositions, rope), isImage, rope);
        TensorAssert.Close(golden.Expected("y"), y, rtol: 1e-4f, atol: 1e-5f, what: $"{name} y");
        using (Autograd.NoGrad())
            TensorAssert.Close(golden.Expected("router"), layer.Router.Route(attention, isImage), rtol: 1e-5f, atol: 1e-6f, what: $"{name} router");
        Ops.Sum(Ops.Mul(y, golden.Input("upstream"))).Backward();

        void Grad(string tensor, Tensor t) => TensorAssert.Close(golden.ExpectedGrad(tensor), t.Grad!, rtol: 1e-3f, atol: 1e-5f, what: $"{name} d{tensor}");
        Grad("hidden", hidden);
        Grad("f_img", fImg);
        Grad("f_txt", fTxt);
        Grad("attention", attention);
        Grad("router.weight", layer.Router.Weight);
        Grad("router.bias", layer.Router.Bias);
        foreach (var (prefix, learner) in new[] { ("visual", layer.Visual), ("textual", layer.Textual) })
            for (int i = 0; i < 4; i++)
            {
                Grad($"{prefix}.{LorraLearner.Projections[i]}.a", learner.A[i]);
                Grad($"{prefix}.{LorraLearner.Projections[i]}.b", learner.B[i]);
            }
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Text_only_logits_are_the_base_bits_with_wings_and_a_bridge_attached(string family)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var alone = PluginFixtures.Bits(model.Forward(Ids));
        var host = new PluginHost(model);
        host.Attach("wings", RandomWings(model, 1));
        host.Attach("bridge", PluginFixtures.RandomBridge(model, 2));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward("wings", MultimodalPrompt.FromIds(Ids))));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward("bridge", MultimodalPrompt.FromIds(Ids))));

        // The same weights do act on a request with an image: the learners change the text rows after it.
        var prompt = ImagePrompt();
        var wingsLogits = host.Forward("wings", prompt);
        var input = host.Plugin("wings").Prepare(prompt);
        using var _ = Autograd.NoGrad();
        Assert.NotEqual(PluginFixtures.Bits(model.ForwardEmbeddings(input.Embeddings)), PluginFixtures.Bits(wingsLogits));
    }

    [Theory]
    [InlineData("llama", WingsRouterInput.ImageTextMass)]
    [InlineData("qwen2", WingsRouterInput.AttentionRow)]
    public void A_training_step_changes_every_part_and_never_a_base_weight(string family, WingsRouterInput router)
    {
        string folder = PluginFixtures.ModelFolder(family);
        string filesBefore = PluginFixtures.HashFolder(folder);
        using var model = DecoderModel.Load(folder);
        string before = PluginFixtures.HashWeights(model);
        var wings = RandomWings(model, 5, router);
        var valuesBefore = wings.Parameters.Select(p => p.Tensor.ToArray()).ToList();

        var prompt = new MultimodalPrompt([new TextPart([1, 17, 42]), new ImagePart(PluginFixtures.Image(9)), new TextPart([9, 3]), new TextPart([88, 5, 6], IsAssistant: true)]);
        var input = wings.Prepare(prompt);
        Ops.CrossEntropy(model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks), input.Targets).Backward();
        new AdamW([new ParameterGroup(wings.Parameters.Select(p => p.Tensor).ToList(), 1e-2f, 0.01f)]).Step();

        Assert.All(wings.Parameters, p => Assert.NotNull(p.Tensor.Grad));
        foreach (var part in new[] { Wings.ProjectorPart, Wings.VisualPart, Wings.TextualPart, Wings.RouterPart })
            Assert.Contains(wings.Parameters.Select((p, i) => (p, i)), x => x.p.Part == part && !x.p.Tensor.ToArray().SequenceEqual(valuesBefore[x.i]));
        Assert.All(model.Weights.All(), t => Assert.Null(t.Grad));
        Assert.Equal(before, PluginFixtures.HashWeights(model));
        Assert.Equal(filesBefore, PluginFixtures.HashFolder(folder));
    }

    [Theory]
    [MemberData(nameof(FamiliesAndRouters))]
    public void At_initialisation_the_multimodal_stream_is_the_base_on_the_same_embeddings_bit_for_bit(string family, WingsRouterInput router)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var wings = Wings.Create(model, PluginFixtures.Vision(), new WingsOptions { Seed = 3, RouterInput = router, RouterRowLength = 32 });
        using var _ = Autograd.NoGrad();
        var input = wings.Prepare(ImagePrompt());
        Assert.Equal(PluginFixtures.Bits(model.ForwardEmbeddings(input.Embeddings)),
            PluginFixtures.Bits(model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks)));
        var text = wings.Prepare(MultimodalPrompt.FromIds(Ids));
        Assert.Equal(PluginFixtures.Bits(model.Forward(Ids)), PluginFixtures.Bits(model.ForwardEmbeddings(text.Embeddings, hooks: text.Hooks)));
    }

    [Theory]
    [MemberData(nameof(FamiliesAndRouters))]
    public void A_cached_decode_equals_recomputation_learner_keys_included(string family, WingsRouterInput router)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var wings = RandomWings(model, 4, router);
        using var _ = Autograd.NoGrad();
        var input = wings.Prepare(ImagePrompt());
        var cache = new KvCache(model.Config, 16);
        var prefill = model.ForwardEmbeddings(input.Embeddings, cache, hooks: input.Hooks);
        var first = model.ForwardEmbeddings(model.Embed([42]), cache, hooks: input.Hooks);
        var second = model.ForwardEmbeddings(model.Embed([7, 11]), cache, hooks: input.Hooks);

        var whole = wings.Prepare(ImagePrompt(42, 7, 11));
        var full = model.ForwardEmbeddings(whole.Embeddings, hooks: whole.Hooks);
        int n = input.Length;
        TensorAssert.Close(Ops.Slice(full, 0, 0, n), prefill, rtol: 1e-5f, atol: 1e-5f, what: "prefill");
        TensorAssert.Close(Ops.Slice(full, 0, n, 1), first, rtol: 1e-5f, atol: 1e-5f, what: "first step");
        TensorAssert.Close(Ops.Slice(full, 0, n + 1, 2), second, rtol: 1e-5f, atol: 1e-5f, what: "second step");
        // The cached path is not the base's: the learners did act on the decoded tokens.
        var baseStep = model.ForwardEmbeddings(whole.Embeddings);
        Assert.NotEqual(PluginFixtures.Bits(Ops.Slice(baseStep, 0, n, 1)), PluginFixtures.Bits(first));
    }

    [Fact]
    public void Hooks_refuse_a_chunk_out_of_order_images_after_the_first_chunk_and_rows_beyond_the_router_length()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        using var _ = Autograd.NoGrad();
        var wings = RandomWings(model, 4);
        var input = wings.Prepare(ImagePrompt());
        var cache = new KvCache(model.Config, 16);
        model.ForwardEmbeddings(Ops.Slice(input.Embeddings, 0, 0, 2), cache, hooks: input.Hooks);
        Assert.Contains("must be in the first chunk", Assert.Throws<NotSupportedException>(() =>
            model.ForwardEmbeddings(Ops.Slice(input.Embeddings, 0, 2, 6), cache, hooks: input.Hooks)).Message);

        var fresh = wings.Prepare(ImagePrompt());
        var other = new KvCache(model.Config, 16);
        model.ForwardEmbeddings(model.Embed([1, 2, 3]), other);
        Assert.Contains("starts at position 3", Assert.Throws<InvalidOperationException>(() =>
            model.ForwardEmbeddings(model.Embed([4]), other, hooks: fresh.Hooks)).Message);

        var narrow = RandomWings(model, 4, WingsRouterInput.AttentionRow, rowLength: 6);
        var tooLong = narrow.Prepare(ImagePrompt());
        Assert.Contains("at most 6 keys", Assert.Throws<ArgumentException>(() => model.ForwardEmbeddings(tooLong.Embeddings, hooks: tooLong.Hooks)).Message);
    }

    [Theory]
    [InlineData(WingsRouterInput.ImageTextMass)]
    [InlineData(WingsRouterInput.AttentionRow)]
    public void Save_and_load_give_the_same_bits_and_mis_shaped_tensors_are_refused(WingsRouterInput router)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        using var temp = new TempFolder();
        var wings = RandomWings(model, 6, router);
        var manifest = PluginFile.Save(wings, temp.Sub("w.graft"));
        Assert.Equal(Wings.RouterInputName(router), manifest.HyperParameters["router_input"]!.GetValue<string>());
        Assert.Equal(4, manifest.HyperParameters["rank"]!.GetValue<int>());
        var loaded = Assert.IsType<Wings>(PluginFile.Load(temp.Sub("w.graft"), model, PluginFixtures.Vision()));
        using (Autograd.NoGrad())
        {
            var a = wings.Prepare(ImagePrompt());
            var b = loaded.Prepare(ImagePrompt());
            Assert.Equal(PluginFixtures.Bits(model.ForwardEmbeddings(a.Embeddings, hooks: a.Hooks)), PluginFixtures.Bits(model.ForwardEmbeddings(b.Embeddings, hooks: b.Hooks)));
        }

        // plugin.json claiming another rank: the tensors no longer fit it.
        string json = Path.Combine(temp.Sub("w.graft"), PluginManifest.FileName);
        var root = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
        root["hyper_parameters"]!["rank"] = 3;
        File.WriteAllText(json, root.ToJsonString());
        var error = Assert.Throws<PluginFormatException>(() => PluginFile.Load(temp.Sub("w.graft"), model));
        Assert.Contains("model.layers.0.wings.visual.q.a", error.Message);
        Assert.Contains("[64, 4]", error.Message);

        root["hyper_parameters"]!["rank"] = 4;
        root["hyper_parameters"]!["router_input"] = "attention-sum";
        File.WriteAllText(json, root.ToJsonString());
        Assert.Contains("hyper_parameters.router_input", Assert.Throws<PluginFormatException>(() => PluginFile.Load(temp.Sub("w.graft"), model)).Message);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void The_plugin_text_route_runs_the_learners_and_the_default_route_stays_the_base(string family)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var alone = PluginFixtures.Bits(model.Forward(Ids));
        var wings = RandomWings(model, 8);
        var host = new PluginHost(model);
        host.Attach("authors", wings, TextRoute.Plugin);
        host.Attach("graft", wings);
        Assert.NotEqual(alone, PluginFixtures.Bits(host.Forward("authors", MultimodalPrompt.FromIds(Ids))));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward("graft", MultimodalPrompt.FromIds(Ids))));
    }

    [Fact]
    public void Creation_is_seeded_scales_the_rank_and_starts_with_zero_B_and_an_even_router()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        var a = Wings.Create(model, PluginFixtures.Vision(), new WingsOptions { Seed = 4 });
        var b = Wings.Create(model, PluginFixtures.Vision(), new WingsOptions { Seed = 4 });
        var c = Wings.Create(model, PluginFixtures.Vision(), new WingsOptions { Seed = 5 });
        Assert.Equal(a.Layers[1].Textual.A[2].ToArray(), b.Layers[1].Textual.A[2].ToArray());
        Assert.NotEqual(a.Layers[1].Textual.A[2].ToArray(), c.Layers[1].Textual.A[2].ToArray());
        Assert.Equal(64, Wings.DefaultRank(4096));
        Assert.Equal(4, Wings.DefaultRank(64));
        Assert.Equal(model.Config.NumLayers, a.Layers.Count);
        // 64 / head_dim 32: two learner heads of the base's head size.
        Assert.Equal(2, a.Layers[0].Visual.Heads);
        var allA = a.Layers.SelectMany(l => l.Visual.A.Concat(l.Textual.A)).SelectMany(t => t.ToArray()).ToArray();
        Assert.All(allA, v => Assert.InRange(v, -0.04f, 0.04f));
        double std = Math.Sqrt(allA.Average(v => (double)v * v));
        Assert.InRange(std, 0.015, 0.02);
        Assert.All(a.Layers.SelectMany(l => l.Visual.B.Concat(l.Textual.B)), t => Assert.All(t.ToArray(), v => Assert.Equal(0f, v)));
        Assert.All(a.Layers, l => Assert.All(l.Router.Weight.ToArray().Concat(l.Router.Bias.ToArray()), v => Assert.Equal(0f, v)));
        Assert.All(a.Parameters, p => Assert.True(p.Tensor.RequiresGrad));
        int d = 64, r = 4, dv = 12;
        long expected = d * dv + d + d * d + d + model.Config.NumLayers * (16L * d * r + 2 * 2 + 2);
        Assert.Equal(expected, a.Parameters.Sum(p => (long)p.Tensor.Length));
    }

    [Fact]
    public void Plugin_new_creates_a_wings_folder_that_inspect_reports_by_part_and_that_loads()
    {
        using var temp = new TempFolder();
        string folder = temp.Sub("w.graft");
        var output = new StringWriter();
        Assert.Equal(0, PluginCommand.RunNew(new PluginNewSettings("wings", PluginFixtures.ModelFolder("llama"), "patch-pixels:4:2", folder) { Seed = 3 }, output));
        Assert.Contains("wrote untrained wings plug-in to", output.ToString());
        output = new StringWriter();
        PluginCommand.RunInspect(folder, output);
        // 3 layers of 8 (A [64, 4], B [4, 64]) per learner; routers [2, 2] + [2].
        Assert.Contains($"  visual: {3 * 8 * 64 * 4:N0} in 24 tensors", output.ToString());
        Assert.Contains($"  textual: {3 * 8 * 64 * 4:N0} in 24 tensors", output.ToString());
        Assert.Contains($"  router: {3 * 6:N0} in 6 tensors", output.ToString());
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        Assert.IsType<Wings>(PluginFile.Load(folder, model));
    }
}
