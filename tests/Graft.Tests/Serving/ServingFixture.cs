using Graft.Models.Chat;
using Graft.Models.Generation;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Serving;
using Graft.Tests.Plugins;
using Graft.Tests.Support;
using Microsoft.Extensions.Logging;
using ChatMessage = Graft.Models.Chat.ChatMessage;

namespace Graft.Tests.Serving;

/// <summary>
/// A checkpoint a server can open, made once for all serving tests: a random tiny Qwen2 sized to the golden qwen2_style
/// tokenizer (ChatML), and a Bridge plug-in with random non-zero weights and a patch-pixels front end, saved as a folder.
/// <see cref="Expected"/> generates a request alone, in process, on a deployment of its own: what a served answer must equal.
/// </summary>
public sealed class ServingFixture : IDisposable
{
    public const string Base = "tiny";
    public const string Plugin = "bridge";
    public const string Blind = "blind";
    public const string PluginModel = Base + "+" + Plugin;
    public const string BlindModel = Base + "+" + Blind;

    private readonly TempFolder _folder = new();
    private readonly PluginDeployment _reference;
    private readonly Tokenizer _tokenizer;
    private readonly ChatTemplate _template;
    private readonly GenerationConfig _generation;

    public ServingFixture()
    {
        ModelFolder = _folder.Sub(Base);
        var config = new LlmConfig
        {
            Family = LlmFamily.Qwen2, Architecture = "Qwen2ForCausalLM", VocabSize = 672, HiddenSize = 64, IntermediateSize = 96, NumLayers = 2,
            NumHeads = 4, NumKeyValueHeads = 2, HeadDim = 16, RmsNormEps = 1e-6f, RopeTheta = 10000, RopeScaling = RopeScaling.None,
            MaxPositionEmbeddings = 8192, TieWordEmbeddings = true, QkvBias = true, OutputBias = false, MlpBias = false, BosTokenIds = [], EosTokenIds = [658],
        };
        // The tokenizer's <|im_end|> (658) ends a turn, as Qwen2's does.
        DecoderCheckpointWriter.Save(ModelFolder, config, DecoderWeights.CreateRandom(config, seed: 3, initializerRange: 0.05f),
            new DecoderCheckpointOptions { TokenizerFolder = Path.Combine(GoldenCase.Folder("tokenizer"), "qwen2_style") });
        PluginFolder = _folder.Sub(Plugin + ".graft");
        using (var model = DecoderModel.Load(ModelFolder)) PluginFile.Save(PluginFixtures.RandomBridge(model, seed: 4), PluginFolder);
        _reference = PluginDeployment.Open(ModelFolder, [KeyValuePair.Create(Plugin, PluginFolder)], null);
        _tokenizer = Tokenizer.FromFolder(ModelFolder);
        _template = ChatTemplates.ForCheckpoint(ModelFolder, _tokenizer);
        _generation = GenerationConfig.FromFolder(ModelFolder);
    }

    public string ModelFolder { get; }
    public string PluginFolder { get; }

    /// <summary>
    /// An engine over the base with the Bridge attached as "bridge" (it sees) and again, without its front end, as "blind"
    /// (it cannot), and optionally a plug-in made to fail as "broken"; it owns its model.
    /// </summary>
    public ChatEngine Engine(ServingOptions? options = null, ILogger? logger = null, Func<DecoderModel, IPlugin>? broken = null)
    {
        var model = DecoderModel.Load(ModelFolder);
        var host = new PluginHost(model);
        host.Attach(Plugin, PluginFile.Load(PluginFolder, model, PluginFixtures.Vision()));
        host.Attach(Blind, PluginFile.Load(PluginFolder, model));
        if (broken is not null) host.Attach("broken", broken(model));
        return new ChatEngine(host, _tokenizer, _template, _generation, Base, options, logger, owned: model);
    }

    /// <summary>The completion of one request generated alone (the plain TextGenerator over its own state), as the engine must give it.</summary>
    public GenerationResult Expected(string? plugin, IReadOnlyList<ChatMessage> messages, SamplingOptions options, IReadOnlyList<IReadOnlyList<RgbImage>>? images = null)
    {
        images ??= messages.Select(_ => (IReadOnlyList<RgbImage>)[]).ToArray();
        var session = new PluginSession(_reference.Host, plugin, maxSequenceLength: 8192);
        var request = session.Request(PluginDeployment.ChatPrompt(plugin is null ? null : _reference.Host.Plugin(plugin), _tokenizer, _template, messages, images), options.MaxTokens);
        return new TextGenerator(_tokenizer, request, _generation.EosTokenIds).Generate(request.PromptIds, options);
    }

    public static RgbImage Image(int seed) => PluginFixtures.Image(seed, 12, 10);

    public static string DataUri(RgbImage image) => "data:image/png;base64," + Convert.ToBase64String(PngEncoder.Encode(image));

    public void Dispose()
    {
        _reference.Dispose();
        _folder.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class ServingCollection : ICollectionFixture<ServingFixture>
{
    public const string Name = "serving";
}
