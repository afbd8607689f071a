using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Graft.Import;
using Graft.Models.Chat;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Tokenizer = Graft.Models.Tokenization.Tokenizer;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.PyTorch;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.Import;

/// <summary>
/// LLaVA-1.5's releases, tiny and in their published layouts (tools/reference/import_llava_golden.py), imported and run:
/// logits agree with haotian-liu/LLaVA's own code (commit c121f04) for a vicuna_v1 text prompt and an image prompt.
/// </summary>
public sealed class LlavaImportTests
{
    private const float Tolerance = 1e-4f;
    private static string Fixture(string name) => Path.Combine(GoldenCase.Folder("import/llava"), name);
    private static string Clip => Fixture("clip-vit-large-patch14-336");

    public static TheoryData<string, string, string> Releases() => new()
    {
        { "llava-v1.5-7b", "llava", "v15" },
        { "llava-1.5-7b-hf", "llava-hf", "hf" },
        { "llava-1.5-7b-hf-v4.52", "llava-hf", "hf" },
        { "llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5", "llava-pretrain", "pretrain" },
    };

    [Theory]
    [MemberData(nameof(Releases))]
    public void ImportedReleaseAgreesWithTheAuthorsCode(string release, string layout, string golden)
    {
        using var output = new Graft.Tests.SafeTensors.TempFolder();
        string source = Fixture(release);
        var before = Hashes(source);
        var result = Importer.Import(new ImportRequest
        {
            Source = source,
            Output = output.Path,
            Base = layout == "llava-pretrain" ? Fixture("vicuna-7b-v1.5") : null,
            Vision = layout == "llava-hf" ? null : Clip,
        });
        Assert.Equal(layout, result.Layout);
        Assert.Equal(layout, Importer.Detect(source));
        Assert.Equal(before, Hashes(source));
        Assert.Equal(layout != "llava-pretrain", result.BaseChanged);

        using var expected = SafeTensorsFile.Open(Fixture("golden.safetensors"));
        using var model = DecoderModel.Load(result.BaseFolder);
        using var vision = PluginDeployment.LoadPlugin(model, result.PluginFolder, result.VisionFolder, out var plugin) as IDisposable;
        Assert.Equal(Bridge.DesignName, plugin.Design);
        Assert.Equal(layout == "llava-pretrain" ? "projector" : "full", plugin.Manifest.HyperParameter<string>("tune", "plugin.json"));
        Assert.Equal("vicuna_v1", plugin.Manifest.HyperParameter<string>("conversation", "plugin.json"));
        var host = new PluginHost(model);
        host.Attach("llava", plugin);

        var textIds = Ids(expected, "text_ids");
        AssertClose(Expected(expected, golden + ".text_logits"), host.Forward("llava", MultimodalPrompt.FromIds(textIds)), $"{release} text");
        var image = ImageDecoder.Load(Fixture("image.png"));
        var imageIds = Ids(expected, "image_ids");
        int at = Array.IndexOf(imageIds, -200);
        var prompt = new MultimodalPrompt([new TextPart(imageIds[..at]), new ImagePart(image), new TextPart(imageIds[(at + 1)..])]);
        AssertClose(Expected(expected, golden + ".image_logits"), host.Forward("llava", plugin.Layout.Arrange(prompt, () => throw new InvalidOperationException(), throughPlugin: true)), $"{release} image");
    }

    [Fact]
    public void ProjectorOnlyReleaseKeepsVicunaBitForBit()
    {
        using var output = new Graft.Tests.SafeTensors.TempFolder();
        var result = Importer.Import(new ImportRequest
        {
            Source = Fixture("llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5/mm_projector.bin"),
            Output = output.Path, Base = Fixture("vicuna-7b-v1.5"), Vision = Clip, Name = "stage1",
        });
        Assert.EndsWith("stage1.graft", result.PluginFolder);
        using var written = SafeTensorsFile.Open(Path.Combine(result.BaseFolder, "model.safetensors"));
        int compared = 0;
        foreach (var shard in new[] { "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin" })
        {
            using var original = PyTorchCheckpointFile.Open(Fixture("vicuna-7b-v1.5/" + shard));
            foreach (var info in original.Tensors.Where(t => !t.Name.Contains("rotary_emb", StringComparison.Ordinal)))
            {
                Assert.Equal(DType.F16, written.Info(info.Name).DType);
                Assert.Equal(original.ReadContiguous(info), written.RawBytes(info.Name).ToArray());
                compared++;
            }
        }
        Assert.Equal(written.Tensors.Count, compared);
        // The projector keeps its bf16 values exactly (widened to F32).
        using var projector = PyTorchCheckpointFile.Open(Fixture("llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5/mm_projector.bin"));
        using var plugin = SafeTensorsFile.Open(Path.Combine(result.PluginFolder, PluginFile.TensorsFileName));
        Assert.Equal(projector.Load("model.mm_projector.2.weight").ToArray(), plugin.ReadFloats("mm_projector.2.weight"));
        var record = JsonNode.Parse(File.ReadAllText(Path.Combine(result.Output, "import.json")))!;
        Assert.Contains("model.mm_projector.0.weight in mm_projector.bin (BF16", record["tensors"]!["stage1.graft/plugin.safetensors"]!["mm_projector.0.weight"]!.GetValue<string>());
    }

    [Fact]
    public void TokenizerFromTokenizerModelEncodesAsSentencePieceAndTheTemplateIsVicunaV1()
    {
        using var output = new Graft.Tests.SafeTensors.TempFolder();
        var result = Importer.Import(new ImportRequest { Source = Fixture("llava-v1.5-7b"), Output = output.Path, Vision = Clip });
        // transformers' LlamaConverter (tools/reference/spm_tokenizer.py) and ours give the same vocabulary and merges.
        var ours = JsonNode.Parse(File.ReadAllText(Path.Combine(result.BaseFolder, "tokenizer.json")))!["model"]!;
        var theirs = JsonNode.Parse(File.ReadAllText(Fixture("llava-1.5-7b-hf/tokenizer.json")))!["model"]!;
        Assert.Equal(theirs["merges"]!.ToJsonString(), ours["merges"]!.ToJsonString());
        Assert.Equal(theirs["vocab"]!.ToJsonString(), ours["vocab"]!.ToJsonString());

        // The golden ids are python3-sentencepiece's encoding of the vicuna_v1 prompts, with BOS, and LLaVA's image split.
        var tokenizer = Tokenizer.FromFolder(result.BaseFolder);
        using var expected = SafeTensorsFile.Open(Fixture("golden.safetensors"));
        var prompts = JsonNode.Parse(File.ReadAllText(Fixture("prompts.json")))!;
        Assert.Equal(Ids(expected, "text_ids"), tokenizer.Encode(prompts["text"]!.GetValue<string>()));
        var pieces = prompts["image"]!.GetValue<string>().Split("<image>");
        var imageIds = Ids(expected, "image_ids");
        int at = Array.IndexOf(imageIds, -200);
        Assert.Equal(imageIds[..at], tokenizer.Encode(pieces[0]));
        Assert.Equal(imageIds[(at + 1)..], tokenizer.Encode(pieces[1])[1..]);

        var vicuna = ChatTemplates.Create("vicuna");
        Assert.Equal(prompts["text"]!.GetValue<string>(), vicuna.Render([ChatMessage.User("What is the capital of France?")], addGenerationPrompt: true));
    }

    [Fact]
    public void MistakesAreRefusedNamingWhatIsWrong()
    {
        using var output = new Graft.Tests.SafeTensors.TempFolder();
        var noTower = Assert.Throws<ArgumentException>(() => Importer.Import(new ImportRequest { Source = Fixture("llava-v1.5-7b"), Output = output.File("a") }));
        Assert.Contains("mm_vision_tower = openai/clip-vit-large-patch14-336", noTower.Message);
        var noBase = Assert.Throws<ArgumentException>(() => Importer.Import(new ImportRequest
            { Source = Fixture("llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5"), Output = output.File("b"), Vision = Clip }));
        Assert.Contains("--base", noBase.Message);
        var inside = Assert.Throws<ArgumentException>(() => Importer.Import(new ImportRequest { Source = Fixture("llava-1.5-7b-hf"), Output = Fixture("llava-1.5-7b-hf/out") }));
        Assert.Contains("overlap", inside.Message);
        Assert.False(Directory.Exists(Fixture("llava-1.5-7b-hf/out")));
        var wrongLayout = Assert.Throws<ImportException>(() => Importer.Import(new ImportRequest
            { Source = Fixture("llava-1.5-7b-hf"), Output = output.File("c"), Format = "llava", Vision = Clip }));
        Assert.Contains("not part of the llava layout", wrongLayout.Message);
        Assert.False(Directory.Exists(output.File("c")));
        var unknown = Assert.Throws<ArgumentException>(() => Importer.Import(new ImportRequest { Source = Fixture("llava-1.5-7b-hf"), Output = output.File("d"), Format = "gpt" }));
        Assert.Contains("llava-hf", unknown.Message);
    }

    [Fact]
    public void TheCommandLineImportsAndReports()
    {
        using var output = new Graft.Tests.SafeTensors.TempFolder();
        var (code, stdout, stderr) = CliRunner.Run([Graft.Cli.ImportCommand.Create()], "import", Fixture("llava-1.5-7b-hf"), "--out", output.File("hf"));
        Assert.True(code == 0, stderr);
        Assert.Contains("imported llava-hf", stdout);
        Assert.Contains("[1/", stderr);
        (code, _, stderr) = CliRunner.Run([Graft.Cli.ImportCommand.Create()], "import", Fixture("llava-v1.5-7b"), "--out", output.File("v15"));
        Assert.Equal(1, code);
        Assert.StartsWith("error: --vision", stderr);
    }

    private static Dictionary<string, string> Hashes(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).ToDictionary(f => f, f => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))));

    private static int[] Ids(SafeTensorsFile file, string name) => file.ReadIntegers(name).Select(v => (int)v).ToArray();

    private static Tensor Expected(SafeTensorsFile file, string name) => Tensor.FromArray(file.ReadFloats(name), file.Info(name).Shape);

    private static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.Shape, actual.Shape);
        var e = expected.ToArray();
        var a = actual.ToArray();
        float scale = e.Max(MathF.Abs), worst = 0;
        for (int i = 0; i < e.Length; i++) worst = MathF.Max(worst, MathF.Abs(e[i] - a[i]));
        Assert.True(worst <= Tolerance * scale, $"{what}: max |difference| {worst} exceeds {Tolerance} x max |logit| {scale}");
    }
}
