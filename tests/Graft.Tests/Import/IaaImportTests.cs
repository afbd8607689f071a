using Graft.Import;
using Graft.Models.Chat;
using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Serving;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;
using Microsoft.Extensions.AI;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using AiChatRole = Microsoft.Extensions.AI.ChatRole;
using ChatMessage = Graft.Models.Chat.ChatMessage;
using Tokenizer = Graft.Models.Tokenization.Tokenizer;

namespace Graft.Tests.Import;

/// <summary>
/// IAA's release, tiny and in the layout its code loads (tools/reference/import_iaa_golden.py): the frozen base and two
/// workflows imported as two InnerAdaptor plug-ins, whose logits agree with 360CVGroup/Inner-Adaptor-Architecture's own
/// model (commit c09c044); and one server holding an imported LLaVA plug-in and the imported IAA plug-ins on one base.
/// </summary>
public sealed class IaaImportTests
{
    private const float Tolerance = 1e-4f;
    private static string Fixture(string name) => Path.Combine(GoldenCase.Folder("import/iaa"), name);
    private static string Clip => Path.Combine(GoldenCase.Folder("import/llava"), "clip-vit-large-patch14-336");

    [Fact]
    public void BothWorkflowsAgreeWithTheAuthorsCodeAndTextIsTheBase()
    {
        using var output = new Graft.Tests.SafeTensors.TempFolder();
        var result = Importer.Import(new ImportRequest { Source = Fixture("iaa"), Output = output.Path, Vision = Clip });
        Assert.Equal("iaa", result.Layout);
        Assert.False(result.BaseChanged);
        using var expected = SafeTensorsFile.Open(Fixture("golden.safetensors"));
        using var model = DecoderModel.Load(result.BaseFolder);
        var ids = expected.ReadIntegers("ids").Select(v => (int)v).ToArray();
        int at = Array.IndexOf(ids, -200);
        var image = ImageDecoder.Load(Path.Combine(GoldenCase.Folder("import/llava"), "image.png"));
        foreach (var (folder, task) in new[] { ("iaa.graft", "MM"), ("iaa-grounding.graft", "G") })
        {
            using var vision = PluginDeployment.LoadPlugin(model, Path.Combine(result.Output, folder), result.VisionFolder, out var plugin) as IDisposable;
            var adaptor = Assert.IsType<InnerAdaptor>(plugin);
            Assert.Equal(InnerAdaptor.Iaa14On32, adaptor.InsertAfter);
            Assert.True(adaptor.HasOwnEmbedding && adaptor.HasOwnNorm && adaptor.HasOwnHead);
            var host = new PluginHost(model);
            host.Attach("iaa", plugin);
            var prompt = new MultimodalPrompt([new TextPart(ids[..at]), new ImagePart(image), new TextPart(ids[(at + 1)..])]);
            AssertClose(Tensor.FromArray(expected.ReadFloats(task + ".image_logits"), expected.Info(task + ".image_logits").Shape), host.Forward("iaa", prompt), task);

            // The Text workflow: a text-only request through the plug-in's host is the base's forward, bit for bit.
            var text = expected.ReadIntegers("text_ids").Select(v => (int)v).ToArray();
            var routed = host.Forward("iaa", MultimodalPrompt.FromIds(text)).ToArray();
            Assert.Equal(model.Forward(text).ToArray(), routed);
            AssertClose(Tensor.FromArray(expected.ReadFloats("Text.text_logits"), expected.Info("Text.text_logits").Shape), Tensor.FromArray(routed, text.Length, model.Config.VocabSize), "Text");
        }
        // The base written is the frozen Llama of the release, bit for bit.
        using var original = SafeTensorsFile.Open(Fixture("llama-3-8b-instruct/model.safetensors"));
        using var written = SafeTensorsFile.Open(Path.Combine(result.BaseFolder, "model.safetensors"));
        Assert.Equal(original.Tensors.Select(t => t.Name).Order(), written.Tensors.Select(t => t.Name).Order());
        foreach (var info in original.Tensors) Assert.Equal(original.RawBytes(info.Name).ToArray(), written.RawBytes(info.Name).ToArray());
    }

    [Fact]
    public async Task OneServerServesAnImportedLlavaAndTheImportedIaaOnTheirSharedBase()
    {
        using var output = new Graft.Tests.SafeTensors.TempFolder();
        var iaa = Importer.Import(new ImportRequest { Source = Fixture("iaa"), Output = output.File("iaa"), Vision = Clip });
        var llava = Importer.Import(new ImportRequest { Source = Fixture("llava-pretrain"), Output = output.File("llava"), Base = Fixture("llama-3-8b-instruct"), Vision = Clip, Name = "llava" });
        Assert.Equal(PluginFile.ReadManifest(iaa.PluginFolder).Base, PluginFile.ReadManifest(llava.PluginFolder).Base);

        KeyValuePair<string, string>[] plugins =
            [KeyValuePair.Create("llava", llava.PluginFolder), KeyValuePair.Create("iaa", iaa.PluginFolder), KeyValuePair.Create("grounding", Path.Combine(iaa.Output, "iaa-grounding.graft"))];
        await using var engine = ChatEngine.Open(iaa.BaseFolder, plugins, iaa.VisionFolder, new ServingOptions { ContextLength = 256 }, "chatml");
        using var client = new GraftChatClient(engine);
        Assert.Equal(["base", "base+grounding", "base+iaa", "base+llava"], engine.ModelIds.Order(StringComparer.Ordinal));
        var image = ImageDecoder.Load(Path.Combine(GoldenCase.Folder("import/llava"), "image.png"));
        var options = new SamplingOptions { MaxTokens = 6, Temperature = 0f };
        foreach (var (name, folder) in plugins)
        {
            var message = new AiChatMessage(AiChatRole.User, [new TextContent("What is this?"), new DataContent(PngEncoder.Encode(image), "image/png")]);
            var response = await client.GetResponseAsync([message], new ChatOptions { ModelId = "base+" + name, MaxOutputTokens = 6, Temperature = 0f });
            var alone = Alone(iaa.BaseFolder, name, folder, iaa.VisionFolder!, [ChatMessage.User("What is this?")], [[image]], options);
            Assert.Equal(alone.Text, response.Text);
            Assert.Equal(alone.PromptTokens, response.Usage!.InputTokenCount);
        }
        var textOnly = await client.GetResponseAsync([new AiChatMessage(AiChatRole.User, "Hello")], new ChatOptions { ModelId = "base+iaa", MaxOutputTokens = 6, Temperature = 0f });
        var baseOnly = await client.GetResponseAsync([new AiChatMessage(AiChatRole.User, "Hello")], new ChatOptions { ModelId = "base", MaxOutputTokens = 6, Temperature = 0f });
        Assert.Equal(baseOnly.Text, textOnly.Text);
    }

    /// <summary>One request generated alone, on a deployment holding only that plug-in: what the server must answer.</summary>
    private static GenerationResult Alone(string baseFolder, string name, string plugin, string vision, IReadOnlyList<ChatMessage> messages,
        IReadOnlyList<IReadOnlyList<RgbImage>> images, SamplingOptions options)
    {
        using var deployment = PluginDeployment.Open(baseFolder, [KeyValuePair.Create(name, plugin)], vision);
        var tokenizer = Tokenizer.FromFolder(baseFolder);
        var template = ChatTemplates.ForCheckpoint(baseFolder, tokenizer, "chatml");
        var session = new PluginSession(deployment.Host, name, maxSequenceLength: 8192);
        var request = session.Request(PluginDeployment.ChatPrompt(deployment.Host.Plugin(name), tokenizer, template, messages, images), options.MaxTokens);
        return new TextGenerator(tokenizer, request, GenerationConfig.FromFolder(baseFolder).EosTokenIds).Generate(request.PromptIds, options);
    }

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
