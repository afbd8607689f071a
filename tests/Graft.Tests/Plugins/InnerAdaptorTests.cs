using System.Text.Json.Nodes;
using Graft.Cli;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.Optim;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>IAA (inner-adaptor): the promises, the identity at initialisation, PyTorch agreement, its own KV cache, files.</summary>
public class InnerAdaptorTests
{
    public static TheoryData<string> Families => new(PluginFixtures.Families);

    private static readonly int[] Ids = [1, 17, 42, 9, 3, 88, 5];

    /// <summary>An IAA whose every weight is random and non-zero (not its initialisation), so nothing passes by being zero.</summary>
    private static InnerAdaptor RandomIaa(DecoderModel model, int seed, bool ownHead = false, IReadOnlyList<int>? insertAfter = null)
    {
        var iaa = InnerAdaptor.Create(model, PluginFixtures.Vision(), new InnerAdaptorOptions { Seed = seed, OwnEmbedding = ownHead, OwnNorm = ownHead, OwnHead = ownHead, InsertAfter = insertAfter });
        var random = new Random(seed + 1000);
        foreach (var p in iaa.Parameters)
        {
            var span = p.Tensor.Span;
            for (int i = 0; i < span.Length; i++)
                span[i] = p.Name.Contains("norm") ? 1f + (float)(random.NextDouble() - 0.5) * 0.4f
                    : (float)(random.NextDouble() * 2 - 1) * 0.2f + (random.Next(2) == 0 ? -0.02f : 0.02f);
        }
        return iaa;
    }

    private static MultimodalPrompt WithImage(int seed = 3) =>
        new([new TextPart([1, 17]), new ImagePart(PluginFixtures.Image(seed)), new TextPart([9, 3])]);

    [Theory]
    [MemberData(nameof(Families))]
    public void Text_only_logits_are_bit_identical_to_the_base_with_iaa_and_a_bridge_attached(string family)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var alone = PluginFixtures.Bits(model.Forward(Ids));
        var host = new PluginHost(model);
        var iaa = RandomIaa(model, 1, ownHead: true);
        host.Attach("iaa", iaa);
        host.Attach("bridge", PluginFixtures.RandomBridge(model, 2));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward("iaa", MultimodalPrompt.FromIds(Ids))));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward("bridge", MultimodalPrompt.FromIds(Ids))));
        Assert.Equal(alone, PluginFixtures.Bits(host.Forward(null, MultimodalPrompt.FromIds(Ids))));

        // The same plug-in changes a request with an image beyond its input: not the base on the same embeddings.
        using var _ = Autograd.NoGrad();
        var input = iaa.Prepare(WithImage());
        Assert.NotEqual(PluginFixtures.Bits(model.ForwardEmbeddings(input.Embeddings)), PluginFixtures.Bits(host.Forward("iaa", WithImage())));
    }

    [Fact]
    public void Iaa_has_no_text_route_and_the_default_route_stays_the_base()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var iaa = RandomIaa(model, 1);
        Assert.False(iaa.CanRouteText);
        var host = new PluginHost(model);
        Assert.Contains("does nothing to text", Assert.Throws<ArgumentException>(() => host.Attach("iaa", iaa, TextRoute.Plugin)).Message);
        host.Attach("iaa", iaa);
        Assert.Null(host.Route("iaa", MultimodalPrompt.FromIds(Ids)));
        Assert.Same(iaa, host.Route("iaa", WithImage()));
    }

    [Theory]
    [InlineData("llama", false)]
    [InlineData("qwen2", true)]
    public void A_training_step_changes_the_plugin_and_never_a_base_weight(string family, bool ownHead)
    {
        string folder = PluginFixtures.ModelFolder(family);
        string filesBefore = PluginFixtures.HashFolder(folder);
        using var model = DecoderModel.Load(folder);
        string before = PluginFixtures.HashWeights(model);
        var iaa = RandomIaa(model, 5, ownHead);
        var valuesBefore = iaa.Parameters.Select(p => p.Tensor.ToArray()).ToList();

        var prompt = new MultimodalPrompt([new TextPart([1, 17, 42]), new ImagePart(PluginFixtures.Image(9)), new TextPart([9, 3]), new TextPart([88, 5, 6], IsAssistant: true)]);
        var input = iaa.Prepare(prompt);
        Ops.CrossEntropy(model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks), input.Targets).Backward();
        new AdamW([new ParameterGroup(iaa.Parameters.Select(p => p.Tensor).ToList(), 1e-2f, 0.01f)]).Step();

        Assert.All(iaa.Parameters, p => Assert.True(p.Tensor.Grad is not null, $"{p.Name} got no gradient"));
        Assert.All(iaa.Parameters.Select((p, i) => (p, i)), x => Assert.False(x.p.Tensor.ToArray().SequenceEqual(valuesBefore[x.i]), $"{x.p.Name} did not change"));
        Assert.All(model.Weights.All(), t => Assert.Null(t.Grad));
        Assert.Equal(before, PluginFixtures.HashWeights(model));
        Assert.Equal(filesBefore, PluginFixtures.HashFolder(folder));
    }

    /// <summary>
    /// At initialisation the inner layers' o_proj and down_proj are zero, so each adds exact zeros to its residual and the
    /// multimodal stream's logits are the base's forward of the same input embeddings, bit for bit (shared head).
    /// </summary>
    [Theory]
    [MemberData(nameof(Families))]
    public void At_initialisation_the_multimodal_stream_is_the_base_on_the_same_embeddings_bit_for_bit(string family)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var iaa = InnerAdaptor.Create(model, PluginFixtures.Vision(), new InnerAdaptorOptions { Seed = 3 });
        Assert.Equal(InnerAdaptor.PresetLayers(InnerAdaptor.Iaa14, model.Config.NumLayers), iaa.InsertAfter);
        using var _ = Autograd.NoGrad();
        var input = iaa.Prepare(WithImage());
        var reference = PluginFixtures.Bits(model.ForwardEmbeddings(input.Embeddings));
        Assert.Equal(reference, PluginFixtures.Bits(model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks)));
        var host = new PluginHost(model);
        host.Attach("iaa", iaa);
        Assert.Equal(reference, PluginFixtures.Bits(host.Forward("iaa", WithImage())));
    }

    /// <summary>
    /// With an own embedding, norm and head, the copies are F32 widenings of the base's tensors: logits equal the base's to 1e-6 (bit for bit where
    /// the base is F32, as Qwen2's; a BF16/F16 head goes through another GEMM path than its F32 copy).
    /// </summary>
    [Theory]
    [MemberData(nameof(Families))]
    public void At_initialisation_with_its_own_head_the_stream_matches_the_base_to_1e6(string family)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var iaa = InnerAdaptor.Create(model, PluginFixtures.Vision(), new InnerAdaptorOptions { Seed = 3, OwnEmbedding = true, OwnNorm = true, OwnHead = true });
        using var _ = Autograd.NoGrad();
        var input = iaa.Prepare(WithImage());
        var expected = model.ForwardEmbeddings(input.Embeddings);
        var actual = model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks);
        TensorAssert.Close(expected, actual, rtol: 1e-6f, atol: 1e-6f, what: $"{family} own head");
        if (model.Weights.Head.DType == DType.F32) Assert.Equal(PluginFixtures.Bits(expected), PluginFixtures.Bits(actual));
    }

    [Fact]
    public void Initialisation_copies_the_frozen_layer_it_follows_and_zeroes_its_output_projections()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        var iaa = InnerAdaptor.Create(model, PluginFixtures.Vision(), new InnerAdaptorOptions { InsertAfter = [0, 2] });
        Assert.Equal("custom", iaa.Manifest.HyperParameters["preset"]!.GetValue<string>());
        for (int k = 0; k < 2; k++)
        {
            var inner = iaa.InnerLayers[k];
            var frozen = model.Weights.Layers[iaa.InsertAfter[k]];
            Assert.Equal(frozen.Query.ToArray(), inner.Query.ToArray());
            Assert.Equal(frozen.Gate.ToArray(), inner.Gate.ToArray());
            Assert.Equal(frozen.AttentionNorm.ToArray(), inner.AttentionNorm.ToArray());
            Assert.All(inner.Output.ToArray(), v => Assert.Equal(0f, v));
            Assert.All(inner.Down.ToArray(), v => Assert.Equal(0f, v));
            Assert.All(inner.All(), t => Assert.True(t.DType == DType.F32 && t.RequiresGrad));
        }
        // Training the copy never writes the base's tensor.
        iaa.InnerLayers[0].Query.Span[0] += 1f;
        Assert.NotEqual(model.Weights.Layers[0].Query.ToArray()[0], iaa.InnerLayers[0].Query.ToArray()[0]);
        Assert.Contains("outside the base's 3 layers", Assert.Throws<ArgumentException>(() =>
            InnerAdaptor.Create(model, PluginFixtures.Vision(), new InnerAdaptorOptions { InsertAfter = [0, 3] })).Message);
        Assert.Contains("strictly increasing", Assert.Throws<ArgumentException>(() =>
            InnerAdaptor.Create(model, PluginFixtures.Vision(), new InnerAdaptorOptions { InsertAfter = [1, 1] })).Message);
    }

    [Fact]
    public void Presets_are_the_papers_lists_on_32_layers_and_scale_to_the_base_depth()
    {
        Assert.Equal([0, 1, 5, 6, 10, 11, 15, 16, 20, 21, 25, 26, 30, 31], InnerAdaptor.PresetLayers(InnerAdaptor.Iaa14, 32));
        Assert.Equal([0, 1, 10, 11, 20, 21, 30, 31], InnerAdaptor.PresetLayers(InnerAdaptor.Iaa8, 32));
        Assert.Equal([0, 1], InnerAdaptor.PresetLayers(InnerAdaptor.Iaa14, 2));
        Assert.Equal([0, 1, 2], InnerAdaptor.PresetLayers(InnerAdaptor.Iaa14, 3));
        Assert.Equal([0, 2, 10, 12, 20, 22, 30, 33, 41, 43, 51, 53, 61, 63], InnerAdaptor.PresetLayers(InnerAdaptor.Iaa14, 64));
        Assert.Equal([0, 1], InnerAdaptor.PresetLayers(InnerAdaptor.Iaa8, 2));
        Assert.Equal([0], InnerAdaptor.PresetLayers(InnerAdaptor.Iaa8, 1));
        Assert.Contains("not an IAA preset", Assert.Throws<ArgumentException>(() => InnerAdaptor.PresetLayers("iaa-3", 32)).Message);
    }

    public static TheoryData<string> GoldenCases => GoldenCase.Names("plugins_iaa");

    [Theory]
    [MemberData(nameof(GoldenCases))]
    public void Forward_and_gradients_match_pytorch(string name)
    {
        using var golden = GoldenCase.Open("plugins_iaa", name);
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var insertAfter = golden.Args.GetProperty("insert_after").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var iaa = InnerAdaptor.Create(model, PluginFixtures.Vision(), new InnerAdaptorOptions
        {
            InsertAfter = insertAfter, OwnEmbedding = golden.Bool("own_head"), OwnNorm = golden.Bool("own_head"), OwnHead = golden.Bool("own_head"),
        });
        foreach (var p in iaa.Parameters)
            if (golden.Has("in." + p.Name)) golden.Input(p.Name).Span.CopyTo(p.Tensor.Span);

        int[] Ints(string arg) => golden.Args.GetProperty(arg).EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var input = iaa.Prepare(new MultimodalPrompt([new TextPart(Ints("ids_a")), new ImagePart(golden.Input("features")), new TextPart(Ints("ids_b"))]));
        var logits = model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks);
        TensorAssert.Close(golden.Expected("logits"), logits, rtol: 1e-4f, atol: 1e-4f, what: $"{name} logits");
        Ops.Sum(Ops.Mul(logits, golden.Input("upstream"))).Backward();
        int compared = 0;
        foreach (var p in iaa.Parameters.Where(p => golden.Has("grad." + p.Name)))
        {
            TensorAssert.Close(golden.ExpectedGrad(p.Name), p.Tensor.Grad!, rtol: 1e-3f, atol: 1e-4f, what: $"{name} d{p.Name}");
            compared++;
        }
        Assert.Equal(golden.Bool("own_head") ? 8 : iaa.Parameters.Count, compared);
        Assert.All(model.Weights.All(), t => Assert.Null(t.Grad));
    }

    [Theory]
    [InlineData("llama", false)]
    [InlineData("internlm2", false)]
    [InlineData("qwen2", true)]
    public void A_multimodal_prompt_decodes_with_the_caches_as_it_recomputes(string family, bool ownHead)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var iaa = RandomIaa(model, 4, ownHead);
        using var _ = Autograd.NoGrad();
        var input = iaa.Prepare(WithImage());
        int[] next = [42, 7];
        var cache = new KvCache(model.Config, 12);
        var prefill = model.ForwardEmbeddings(input.Embeddings, cache, hooks: input.Hooks);
        // The inner layers' cache starts at the prefill's length, so each step below also grows it.
        var steps = next.Select(id => model.ForwardEmbeddings(iaa.Embed([id]), cache, hooks: input.Hooks)).ToList();

        var fresh = iaa.Prepare(WithImage());
        var full = model.ForwardEmbeddings(Ops.Concat([fresh.Embeddings, iaa.Embed(next)], 0), hooks: fresh.Hooks);
        TensorAssert.Close(Ops.Slice(full, 0, 0, input.Length), prefill, rtol: 1e-5f, atol: 1e-5f, what: "prefill");
        for (int i = 0; i < next.Length; i++)
            TensorAssert.Close(Ops.Slice(full, 0, input.Length + i, 1), steps[i], rtol: 1e-5f, atol: 1e-5f, what: $"decode step {i}");

        // A step whose position is not where the inner layers' cache stops (here: another request's base cache) is refused rather than run on stale keys.
        var other = new KvCache(model.Config, 12);
        var again = iaa.Prepare(WithImage());
        model.ForwardEmbeddings(again.Embeddings, other, hooks: again.Hooks);
        Assert.Contains("inner layers' cache holds", Assert.Throws<InvalidOperationException>(() =>
            model.ForwardEmbeddings(iaa.Embed([5]), other, hooks: input.Hooks)).Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Save_and_load_give_bit_identical_outputs(bool ownHead)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        var iaa = RandomIaa(model, 6, ownHead, insertAfter: [1, 2]);
        using var folder = new TempFolder();
        var manifest = PluginFile.Save(iaa, folder.Sub("iaa.graft"));
        Assert.Equal(ownHead ? 3 : 2, manifest.TensorParts!.Count);
        var loaded = Assert.IsType<InnerAdaptor>(PluginFile.Load(folder.Sub("iaa.graft"), model, PluginFixtures.Vision()));
        Assert.Equal([1, 2], loaded.InsertAfter);
        Assert.Equal([ownHead, ownHead, ownHead], new[] { loaded.HasOwnEmbedding, loaded.HasOwnNorm, loaded.HasOwnHead });
        Assert.Equal(iaa.Parameters.Select(p => p.Name), loaded.Parameters.Select(p => p.Name));
        using var _ = Autograd.NoGrad();
        var a = iaa.Prepare(WithImage());
        var b = loaded.Prepare(WithImage());
        Assert.Equal(PluginFixtures.Bits(model.ForwardEmbeddings(a.Embeddings, hooks: a.Hooks)), PluginFixtures.Bits(model.ForwardEmbeddings(b.Embeddings, hooks: b.Hooks)));
    }

    /// <summary>
    /// Each own part alone, on a tied base (Qwen2) and an untied one (Llama): the tensors it adds, saved and loaded as
    /// chosen, and a stream at initialisation equal to the base's within 1e-6 (the copies hold the base's values).
    /// </summary>
    [Theory]
    [InlineData("qwen2", true, false, false, "model.embed_tokens_condition.weight")]
    [InlineData("qwen2", false, true, false, "model.norm_condition.weight")]
    [InlineData("qwen2", false, false, true, "lm_head_condition.weight")]
    [InlineData("qwen2", true, false, true, "model.embed_tokens_condition.weight")]
    [InlineData("llama", true, false, true, "model.embed_tokens_condition.weight,lm_head_condition.weight")]
    [InlineData("llama", false, true, true, "model.norm_condition.weight,lm_head_condition.weight")]
    public void Own_embedding_norm_and_head_are_chosen_one_by_one(string family, bool embedding, bool norm, bool head, string tensors)
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder(family));
        var iaa = InnerAdaptor.Create(model, PluginFixtures.Vision(), new InnerAdaptorOptions { Seed = 2, OwnEmbedding = embedding, OwnNorm = norm, OwnHead = head });
        Assert.Equal(tensors.Split(','), iaa.Parameters.Where(p => p.Part == InnerAdaptor.HeadPart).Select(p => p.Name));
        using var folder = new TempFolder();
        var manifest = PluginFile.Save(iaa, folder.Sub("iaa.graft"));
        Assert.Equal([embedding, norm, head], new[] { "own_embedding", "own_norm", "own_head" }.Select(f => manifest.HyperParameter<bool>(f, "test")));
        var loaded = Assert.IsType<InnerAdaptor>(PluginFile.Load(folder.Sub("iaa.graft"), model, PluginFixtures.Vision()));
        Assert.Equal([embedding, norm, head], new[] { loaded.HasOwnEmbedding, loaded.HasOwnNorm, loaded.HasOwnHead });
        using var _ = Autograd.NoGrad();
        var input = loaded.Prepare(WithImage());
        TensorAssert.Close(model.ForwardEmbeddings(input.Embeddings), model.ForwardEmbeddings(input.Embeddings, hooks: input.Hooks), rtol: 1e-6f, atol: 1e-6f, what: tensors);
    }

    [Fact]
    public void Loading_refuses_mis_shaped_tensors_and_inconsistent_layer_lists()
    {
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("qwen2"));
        var iaa = RandomIaa(model, 7);
        using var folder = new TempFolder();
        string path = folder.Sub("iaa.graft");
        var manifest = PluginFile.Save(iaa, path);

        // A mis-shaped inner tensor, with plugin.json naming the rewritten file so only the shape is at fault.
        string tensorsPath = Path.Combine(path, PluginFile.TensorsFileName);
        var tensors = iaa.Parameters.ToDictionary(p => p.Name, p => p.Tensor);
        tensors["model.condition_layers.1.mlp.down_proj.weight"] = Tensor.FromArray(new float[64 * 95], 64, 95);
        SafeTensorsWriter.Write(tensorsPath, tensors);
        string sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(tensorsPath)));
        File.WriteAllText(Path.Combine(path, PluginManifest.FileName), (manifest with { TensorsSha256 = sha }).ToJson());
        var error = Assert.Throws<PluginFormatException>(() => PluginFile.Load(path, model));
        Assert.Contains("model.condition_layers.1.mlp.down_proj.weight", error.Message);
        Assert.Contains("[64, 96]", error.Message);

        // A layer list that is not what its preset gives on this base.
        PluginFile.Save(iaa, path);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(path, PluginManifest.FileName)))!;
        json["hyper_parameters"]!["insert_after"] = new JsonArray(1, 0);
        json["hyper_parameters"]!["preset"] = "custom";
        File.WriteAllText(Path.Combine(path, PluginManifest.FileName), json.ToJsonString());
        Assert.Contains("strictly increasing", Assert.Throws<PluginFormatException>(() => PluginFile.Load(path, model)).Message);
        json["hyper_parameters"]!["insert_after"] = new JsonArray(1);
        File.WriteAllText(Path.Combine(path, PluginManifest.FileName), json.ToJsonString());
        Assert.Contains("model.condition_layers.1.", Assert.Throws<PluginFormatException>(() => PluginFile.Load(path, model)).Message);

        // One inner layer's tensors under a preset that gives two on this base.
        PluginFile.Save(RandomIaa(model, 8, insertAfter: [1]), path);
        json = JsonNode.Parse(File.ReadAllText(Path.Combine(path, PluginManifest.FileName)))!;
        json["hyper_parameters"]!["preset"] = "iaa-14";
        File.WriteAllText(Path.Combine(path, PluginManifest.FileName), json.ToJsonString());
        Assert.Contains("preset iaa-14 on 2 layers is [0, 1]", Assert.Throws<PluginFormatException>(() => PluginFile.Load(path, model)).Message);
    }

    [Fact]
    public void The_cli_creates_an_iaa_14_plugin_that_loads_and_inspects_by_part()
    {
        using var temp = new TempFolder();
        string folder = temp.Sub("iaa.graft");
        var output = new StringWriter();
        Assert.Equal(0, PluginCommand.RunNew(new PluginNewSettings(InnerAdaptor.DesignName, PluginFixtures.ModelFolder("llama"), "patch-pixels:4:2", folder) { Seed = 3 }, output));
        Assert.Contains("wrote untrained inner-adaptor plug-in to", output.ToString());
        using var model = DecoderModel.Load(PluginFixtures.ModelFolder("llama"));
        var loaded = Assert.IsType<InnerAdaptor>(PluginFile.Load(folder, model));
        Assert.Equal([0, 1, 2], loaded.InsertAfter);
        output = new StringWriter();
        PluginCommand.RunInspect(folder, output);
        // Per inner layer of the tiny Llama (64 wide, 4 heads of 32, 2 KV heads, FFN 160): norms, q, k, v, o, gate, up, down.
        int perLayer = 2 * 64 + 128 * 64 + 2 * 64 * 64 + 64 * 128 + 3 * 160 * 64;
        Assert.Contains($"  inner_layers: {3 * perLayer:N0} in 27 tensors", output.ToString());
    }
}
