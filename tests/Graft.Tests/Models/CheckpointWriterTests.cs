using Graft.Models;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Models.Vision;
using Graft.Tensors;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

/// <summary>Decoders and CLIP towers made from scratch, made trainable, written as Hugging Face folders and read back.</summary>
public sealed class CheckpointWriterTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"graft-writer-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    private string Folder(string name) => Path.Combine(_root, name);

    internal static LlmConfig Qwen2Config(bool tied = true) => LlmConfig.Parse($$"""
        {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 80, "max_position_embeddings": 64,
         "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": {{(tied ? "true" : "false")}},
         "bos_token_id": null, "eos_token_id": [3, 1]}
        """, "qwen2 test config");

    private static LlmConfig LlamaConfig() => LlmConfig.Parse("""
        {"architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 3,
         "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 70, "max_position_embeddings": 128,
         "rms_norm_eps": 1e-5, "attention_bias": true, "mlp_bias": true, "bos_token_id": 1, "eos_token_id": 2,
         "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32}}
        """, "llama test config");

    private static readonly int[] Ids = [5, 17, 3, 60, 22, 9, 41, 0, 12];

    public static TheoryData<string> Families => new() { "qwen2", "qwen2-untied", "llama" };

    private static LlmConfig ConfigFor(string family) => family switch
    {
        "qwen2" => Qwen2Config(),
        "qwen2-untied" => Qwen2Config(tied: false),
        _ => LlamaConfig(),
    };

    [Theory]
    [MemberData(nameof(Families))]
    public void Random_decoder_written_and_loaded_gives_bit_identical_logits(string family)
    {
        var config = ConfigFor(family);
        var weights = DecoderWeights.CreateRandom(config, seed: 7);
        var expected = DecoderModel.FromWeights(config, weights).Forward(Ids).ToArray();

        DecoderCheckpointWriter.Save(Folder(family), config, weights);
        using var loaded = DecoderModel.Load(Folder(family));

        Assert.Equal(expected, loaded.Forward(Ids).ToArray());
        var c = loaded.Config;
        Assert.Equal((config.Family, config.VocabSize, config.HiddenSize, config.IntermediateSize, config.NumLayers, config.NumHeads, config.NumKeyValueHeads, config.HeadDim),
            (c.Family, c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumLayers, c.NumHeads, c.NumKeyValueHeads, c.HeadDim));
        Assert.Equal((config.RmsNormEps, config.RopeTheta, config.RopeScaling, config.MaxPositionEmbeddings, config.TieWordEmbeddings),
            (c.RmsNormEps, c.RopeTheta, c.RopeScaling, c.MaxPositionEmbeddings, c.TieWordEmbeddings));
        Assert.Equal((config.QkvBias, config.OutputBias, config.MlpBias), (c.QkvBias, c.OutputBias, c.MlpBias));
        Assert.Equal(config.BosTokenIds, c.BosTokenIds);
        Assert.Equal(config.EosTokenIds, c.EosTokenIds);
        Assert.Equal("float32", c.TorchDType);
        Assert.True(CheckpointFolder.IsGraftFolder(Folder(family)));
        Assert.Equal(config.EosTokenIds, Graft.Models.Generation.GenerationConfig.FromFolder(Folder(family)).EosTokenIds);
        Assert.Empty(Directory.GetDirectories(_root, ".*"));
    }

    [Fact]
    public void Random_init_follows_hugging_face_and_the_seed()
    {
        var config = LlamaConfig();
        var weights = DecoderWeights.CreateRandom(config, seed: 3, initializerRange: 0.05f);
        Assert.All(weights.All(), t => Assert.True(t.DType == DType.F32 && t.RequiresGrad && t.IsLeaf, $"{t.Name} should be a trainable F32 leaf"));
        var layer = weights.Layers[1];
        Assert.All(new[] { layer.AttentionNorm, layer.FfnNorm, weights.FinalNorm }, n => Assert.All(n.ToArray(), v => Assert.Equal(1f, v)));
        Assert.All(new[] { layer.QueryBias!, layer.OutputBias!, layer.DownBias! }, b => Assert.All(b.ToArray(), v => Assert.Equal(0f, v)));
        var values = weights.Layers.SelectMany(l => l.Gate.ToArray()).Concat(weights.Embedding.ToArray()).ToArray();
        double mean = values.Average(v => (double)v), std = Math.Sqrt(values.Average(v => (double)v * v) - mean * mean);
        Assert.InRange(mean, -0.005, 0.005);
        Assert.InRange(std, 0.047, 0.053);
        Assert.Equal("model.layers.1.mlp.gate_proj.weight", layer.Gate.Name);

        Assert.Equal(weights.Head.ToArray(), DecoderWeights.CreateRandom(config, seed: 3, initializerRange: 0.05f).Head.ToArray());
        Assert.NotEqual(weights.Head.ToArray(), DecoderWeights.CreateRandom(config, seed: 4, initializerRange: 0.05f).Head.ToArray());
    }

    [Fact]
    public void Trainable_copy_of_a_mapped_bf16_base_is_writable_f32_and_leaves_the_base_alone()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("llama"));
        var baseQuery = model.Weights.Layers[0].Query;
        var before = baseQuery.ToArray();
        var trainable = model.Weights.ToTrainable();
        Assert.All(trainable.All(), t => Assert.True(t.DType == DType.F32 && t.RequiresGrad && !t.IsReadOnly, $"{t.Name} should be a writable trainable F32 copy"));
        Assert.Equal(model.Weights.All().Count(), trainable.All().Count());
        Assert.Equal(before, trainable.Layers[0].Query.ToArray());
        Assert.Equal(baseQuery.Name, trainable.Layers[0].Query.Name);

        var copy = DecoderModel.FromWeights(model.Config, trainable);
        var loss = Ops.CrossEntropy(copy.ForwardEmbeddings(copy.Embed([1, 2, 3, 4])), [2, 3, 4, 5]);
        loss.Backward();
        Assert.NotNull(trainable.Layers[0].Query.Grad);
        Assert.NotNull(trainable.Embedding.Grad);
        Assert.Null(baseQuery.Grad);
        Assert.False(baseQuery.RequiresGrad);
        Assert.Equal(before, baseQuery.ToArray());
        Assert.Equal(DType.BF16, baseQuery.DType);
    }

    [Fact]
    public void Trainable_copy_keeps_a_tied_head_tied()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("qwen2"));
        var trainable = model.Weights.ToTrainable();
        Assert.Same(trainable.Embedding, trainable.Head);
        Assert.NotSame(model.Weights.Embedding, trainable.Embedding);
        Assert.Equal(model.Forward([1, 5, 9]).ToArray(), DecoderModel.FromWeights(model.Config, trainable).Forward([1, 5, 9]).ToArray());
    }

    [Fact]
    public void A_loaded_checkpoint_rewritten_loads_again_with_its_tokenizer()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("qwen2"));
        string tokenizerFolder = Path.Combine(GoldenCase.Folder("tokenizer"), "qwen2_style");
        DecoderCheckpointWriter.Save(Folder("copy"), model.Config, model.Weights, new DecoderCheckpointOptions { TokenizerFolder = tokenizerFolder });
        using var copy = DecoderModel.Load(Folder("copy"));
        Assert.Equal(model.Forward([1, 5, 9, 200]).ToArray(), copy.Forward([1, 5, 9, 200]).ToArray());
        var tokenizer = Tokenizer.FromFolder(Folder("copy"));
        Assert.Equal(Tokenizer.FromFolder(tokenizerFolder).Encode("Hello, Graft!"), tokenizer.Encode("Hello, Graft!"));
        Assert.Equal("<|im_end|>", tokenizer.EosToken);
    }

    [Fact]
    public void Bf16_storage_halves_the_file_and_loads_as_bf16()
    {
        var config = Qwen2Config();
        var weights = DecoderWeights.CreateRandom(config, seed: 2);
        DecoderCheckpointWriter.Save(Folder("bf16"), config, weights, new DecoderCheckpointOptions { StoredAs = DType.BF16 });
        using var loaded = DecoderModel.Load(Folder("bf16"));
        Assert.Equal(DType.BF16, loaded.Weights.Layers[0].Up.DType);
        Assert.Equal("bfloat16", loaded.Config.TorchDType);
        TensorAssert.Close(DecoderModel.FromWeights(config, weights).Forward(Ids), loaded.Forward(Ids), 2e-2f, 2e-2f, "bf16 logits");
    }

    [Fact]
    public void A_folder_not_written_by_graft_is_only_replaced_when_asked()
    {
        var config = Qwen2Config();
        var weights = DecoderWeights.CreateRandom(config, seed: 1);
        string target = Folder("theirs");
        Directory.CreateDirectory(target);
        File.WriteAllText(Path.Combine(target, "notes.txt"), "mine");

        var error = Assert.Throws<IOException>(() => DecoderCheckpointWriter.Save(target, config, weights));
        Assert.Contains(CheckpointFolder.MarkerFileName, error.Message);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(target, "notes.txt")));
        Assert.Empty(Directory.GetDirectories(_root, ".*"));

        DecoderCheckpointWriter.Save(target, config, weights, new DecoderCheckpointOptions { Overwrite = true });
        Assert.False(File.Exists(Path.Combine(target, "notes.txt")));
        var other = DecoderWeights.CreateRandom(config, seed: 2);
        DecoderCheckpointWriter.Save(target, config, other);
        using var loaded = DecoderModel.Load(target);
        Assert.Equal(DecoderModel.FromWeights(config, other).Forward(Ids).ToArray(), loaded.Forward(Ids).ToArray());
    }

    [Fact]
    public void Configs_the_family_cannot_express_are_refused_before_anything_is_written()
    {
        var llama = LlamaConfig() with { OutputBias = false };
        var weights = DecoderWeights.CreateRandom(llama, seed: 1);
        var error = Assert.Throws<ArgumentException>(() => DecoderCheckpointWriter.Save(Folder("bad"), llama, weights));
        Assert.Contains("attention_bias", error.Message);
        Assert.False(Directory.Exists(Folder("bad")));

        var mismatched = Assert.Throws<ArgumentException>(() => DecoderCheckpointWriter.Save(Folder("bad"), Qwen2Config(), DecoderWeights.CreateRandom(Qwen2Config(tied: false), 1)));
        Assert.Contains("separate head", mismatched.Message);
    }

    private static VisionTowerConfig ClipConfig() =>
        new(VisionTowerKind.Clip, ImageSize: 32, PatchSize: 8, Channels: 3, Width: 24, IntermediateSize: 40, Layers: 3, Heads: 4, VisionActivation.QuickGelu, 1e-5f);

    private static ImageProcessorConfig ClipPreprocessing(int size) => ImageProcessorConfig.Clip() with { ShortestEdge = size, CropHeight = size, CropWidth = size };

    [Fact]
    public void Random_clip_tower_written_and_loaded_gives_bit_identical_features()
    {
        var config = ClipConfig();
        var tower = ClipVisionModel.CreateRandom(config, seed: 5);
        Assert.All(tower.Parameters, t => Assert.True(t.RequiresGrad && t.DType == DType.F32, $"{t.Name} should be trainable F32"));
        var pixels = Tensor.FromArray(Enumerable.Range(0, 2 * 3 * 32 * 32).Select(i => MathF.Sin(i * 0.37f)).ToArray(), 2, 3, 32, 32);
        VisionOutput expected;
        using (Autograd.NoGrad()) expected = tower.Forward(pixels);

        ClipCheckpointWriter.Save(Folder("clip"), tower, ClipPreprocessing(32));
        using var loaded = VisionEncoder.Load(Folder("clip"));
        var actual = loaded.Forward(pixels);

        Assert.Equal(config, loaded.Config);
        Assert.Equal(expected.LastHiddenState.ToArray(), actual.LastHiddenState.ToArray());
        Assert.Equal(expected.Pooled!.ToArray(), actual.Pooled!.ToArray());
        Assert.Equal(expected.HiddenStates[1].ToArray(), actual.HiddenStates[1].ToArray());
        var preprocessing = ImageProcessorConfig.Load(Path.Combine(Folder("clip"), "preprocessor_config.json"));
        Assert.Equal(ClipPreprocessing(32).HuggingFaceKeys().Keys, preprocessing.HuggingFaceKeys().Keys);
        Assert.Equal((32, 32), preprocessing.OutputSize(32, 32));
        Assert.Equal(ImageProcessorConfig.OpenAIClipMean, preprocessing.ImageMean);
        Assert.Equal(preprocessing.RescaleFactor, ClipPreprocessing(32).RescaleFactor);
    }

    [Fact]
    public void Random_clip_init_uses_the_clip_scales()
    {
        var config = ClipConfig() with { Width = 64, Layers = 2, IntermediateSize = 128 };
        var tower = ClipVisionModel.CreateRandom(config, seed: 9);
        static double Std(Tensor t) => Math.Sqrt(t.ToArray().Average(v => (double)v * v));
        Assert.InRange(Std(tower.Blocks[0].Query.Weight), 0.9 * 0.0625, 1.1 * 0.0625);      // 64^-½ · 4^-½
        Assert.InRange(Std(tower.Blocks[0].Output.Weight), 0.9 * 0.125, 1.1 * 0.125);      // 64^-½
        Assert.InRange(Std(tower.Blocks[1].Fc1.Weight), 0.9 * 0.0884, 1.1 * 0.0884);        // 128^-½
        Assert.InRange(Std(tower.PositionEmbedding), 0.9 * 0.02, 1.1 * 0.02);
        Assert.All(tower.Blocks[1].Norm2.Weight.ToArray(), v => Assert.Equal(1f, v));
        Assert.All(tower.Blocks[1].Fc2.Bias!.ToArray(), v => Assert.Equal(0f, v));
        Assert.Equal([1, 1, 64], tower.ClassEmbedding.Shape);
    }

    [Fact]
    public void Clip_writer_refuses_preprocessing_for_another_image_size()
    {
        var tower = ClipVisionModel.CreateRandom(ClipConfig(), seed: 1);
        var error = Assert.Throws<ArgumentException>(() => ClipCheckpointWriter.Save(Folder("clip"), tower, ClipPreprocessing(48)));
        Assert.Contains("48x48", error.Message);
        Assert.False(Directory.Exists(Folder("clip")));
    }
}
