using Graft.Models.Chat;
using Graft.Models.Imaging;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Tensors;

namespace Graft.Eval;

/// <summary>
/// The plug-in route: requests go through a <see cref="PluginHost"/> holding the base and the named plug-in, so a
/// request with images runs base + plug-in, and a text-only request runs the base alone or the plug-in, as the
/// plug-in was attached (<see cref="TextRoute"/>). A text-only request the host sends to the base is scored by a
/// <see cref="DecoderScoringModel"/> over that base, so its numbers are the base route's, bit for bit (batches share
/// prompt prefixes as there). Any other prompt is laid out as the plug-in's design asks (<see cref="IPlugin.Layout"/>, the
/// layout the trainer teaches) and each piece tokenised (special tokens, e.g. BOS, on the first piece only); continuations
/// are split off the last text piece as the base route does, and one forward scores all single-token candidates. Generation is greedy through a
/// <see cref="PluginSession"/>: the prompt is prepared once and each new token runs on the KV cache, the decode steps
/// of several requests together (<see cref="GreedyBatch"/>). A conversation is laid out in the plug-in's chat template (the
/// one it was trained in, else the base's own) by <see cref="PluginDeployment.ChatPrompt"/>, the code `graft chat` and the
/// server run, so its answer is theirs token for token.
/// </summary>
public sealed class PluginScoringModel : IScoringModel
{
    private readonly PluginHost _host;
    private readonly string _plugin;
    private readonly Tokenizer _tokenizer;
    private readonly HashSet<int> _eos;
    private readonly bool _textThroughPlugin;
    private readonly DecoderScoringModel _text;
    private readonly PluginSession _session;
    private readonly PromptLayout _layout;
    private readonly ChatTemplate? _template;

    /// <param name="baseTemplate">The base's own chat template, for a plug-in that records none (conversations need one or the other).</param>
    public PluginScoringModel(PluginHost host, string plugin, Tokenizer tokenizer, TextRoute textRoute, ChatTemplate? baseTemplate = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(tokenizer);
        _layout = host.Plugin(plugin).Layout;
        _template = host.Plugin(plugin).Manifest.ChatTemplate is { } recorded
            ? ChatTemplates.FromRecord(recorded.Name, recorded.Source, tokenizer.BosToken, tokenizer.EosToken)
            : baseTemplate;
        _host = host;
        _plugin = plugin;
        _tokenizer = tokenizer;
        _eos = [.. host.Base.Config.EosTokenIds];
        if (tokenizer.EosTokenId is { } eos) _eos.Add(eos);
        _textThroughPlugin = textRoute == TextRoute.Plugin;
        // A plug-in's text-only conversations that the host sends to the base are still laid out in the plug-in's template.
        _text = new DecoderScoringModel(host.Base, tokenizer, _template);
        _session = new PluginSession(host, plugin, int.MaxValue);
        Route = _textThroughPlugin ? $"plugin:{plugin} (text via plug-in)" : $"plugin:{plugin}";
    }

    public string Route { get; }
    public bool AcceptsImages => true;

    /// <summary>Text-only prompts the base scored shortened to fit its context; prompts through the plug-in are never shortened.</summary>
    public int TruncatedPrompts => _text.TruncatedPrompts;

    public double[] LogLikelihoods(EvalPrompt prompt, IReadOnlyList<string> continuations) =>
        LogLikelihoods([new LikelihoodRequest(prompt, continuations)])[0];

    /// <summary>Text-only requests the host sends to the base go to it as one batch; the others run one at a time.</summary>
    public IReadOnlyList<double[]> LogLikelihoods(IReadOnlyList<LikelihoodRequest> requests, Action<int>? completed = null)
    {
        ArgumentNullException.ThrowIfNull(requests);
        var scores = new double[requests.Count][];
        var toBase = Enumerable.Range(0, requests.Count).Where(i => ToBase(requests[i].Prompt)).ToArray();
        int done = 0;
        if (toBase.Length > 0)
        {
            var baseScores = _text.LogLikelihoods(toBase.Select(i => requests[i]).ToArray(), finished => completed?.Invoke(done = finished));
            for (int k = 0; k < toBase.Length; k++) scores[toBase[k]] = baseScores[k];
        }
        for (int i = 0; i < requests.Count; i++)
        {
            if (scores[i] is not null) continue;
            scores[i] = ThroughPlugin(requests[i].Prompt, requests[i].Continuations);
            completed?.Invoke(++done);
        }
        return scores;
    }

    private double[] ThroughPlugin(EvalPrompt prompt, IReadOnlyList<string> continuations)
    {
        if (continuations.Count == 0) throw new ArgumentException("no continuations to score", nameof(continuations));
        if (prompt.Conversation is not null) throw new NotSupportedException("a conversation is asked for an answer to generate, not scored by likelihood");
        var (parts, last, first) = Split(prompt);
        var context = Encode(last, first);
        var splits = new (int[] Full, int Common)[continuations.Count];
        bool singleTokens = true;
        for (int i = 0; i < continuations.Count; i++)
        {
            var full = Encode(last + continuations[i], first);
            int common = Common(context, full);
            if (common == full.Length) throw new ArgumentException($"continuation \"{continuations[i]}\" adds no token to the prompt", nameof(continuations));
            splits[i] = (full, common);
            singleTokens &= common == context.Length && full.Length == context.Length + 1;
        }
        var scores = new double[continuations.Count];
        if (singleTokens)
        {
            var row = Forward(parts, context, lastPositionOnly: true).Span;
            double logSum = DecoderScoringModel.LogSumExp(row);
            for (int i = 0; i < scores.Length; i++) scores[i] = row[splits[i].Full[^1]] - logSum;
            return scores;
        }
        for (int i = 0; i < scores.Length; i++)
        {
            var (full, common) = splits[i];
            var logits = Forward(parts, full, lastPositionOnly: false);   // [T, V]
            int length = logits.Shape[0], vocab = logits.Shape[1], continuation = full.Length - common;
            double total = 0;
            for (int j = 0; j < continuation; j++)
            {
                var row = logits.Span.Slice((length - continuation - 1 + j) * vocab, vocab);
                total += row[full[common + j]] - DecoderScoringModel.LogSumExp(row);
            }
            scores[i] = total;
        }
        return scores;
    }

    public string Generate(EvalPrompt prompt, int maxNewTokens, string? stop = null) => Generate([new GenerationRequest(prompt, maxNewTokens, stop)])[0];

    /// <summary>
    /// Greedy completions decoded together (<see cref="GreedyBatch"/>): text-only requests the host sends to the base as
    /// the base route runs them, the others through the plug-in's session, each what decoding it alone gives.
    /// </summary>
    public IReadOnlyList<string> Generate(IReadOnlyList<GenerationRequest> requests, Action<int>? completed = null)
    {
        ArgumentNullException.ThrowIfNull(requests);
        var textIds = requests.Select(r => ToBase(r.Prompt) ? _text.PromptIds(r) : null).ToArray();
        foreach (var request in requests) ArgumentOutOfRangeException.ThrowIfNegativeOrZero(request.MaxNewTokens);
        return GreedyBatch.Run(requests.Count, i => textIds[i] is { } ids ? _text.Open(ids, requests[i]) : ThroughPlugin(requests[i]), _tokenizer, _eos, completed);
    }

    /// <summary>A request prepared by the plug-in (images encoded) and a state on the session's cache, for its prompt and new tokens.</summary>
    private GreedySequence ThroughPlugin(GenerationRequest generation)
    {
        var request = _session.Request(Prompt(generation.Prompt), generation.MaxNewTokens);
        if (request.PromptIds.Count >= request.MaxSequenceLength)
            throw new ArgumentException($"the prompt takes {request.PromptIds.Count} positions, which leaves no room in the model's context of {request.MaxSequenceLength}");
        int room = Math.Min(generation.MaxNewTokens, request.MaxSequenceLength - request.PromptIds.Count);
        return new GreedySequence(request.CreateState(), request.PromptIds.ToArray(), room, generation.Stop);
    }

    /// <summary>The request for a prompt: a conversation in the plug-in's chat template, as chat and the server lay it out; else the text in the design's layout.</summary>
    private MultimodalPrompt Prompt(EvalPrompt prompt)
    {
        if (prompt.Conversation is { } conversation)
        {
            var template = _template ?? throw new ArgumentException(
                "a conversation benchmark is asked in the plug-in's chat template, and neither the plug-in nor the base has one; name one with --template (plain for a base with no chat training)");
            var images = conversation.Images.Select(list => (IReadOnlyList<RgbImage>)list.Select(path => ImageDecoder.Load(path)).ToArray()).ToArray();
            return PluginDeployment.ChatPrompt(_host.Plugin(_plugin), _tokenizer, template, conversation.Messages, images, throughPlugin: _textThroughPlugin);
        }
        var (parts, last, first) = Split(prompt);
        var tail = Encode(last, first);
        return new MultimodalPrompt(tail.Length > 0 ? [.. parts, new TextPart(tail)] : parts);
    }

    /// <summary>Whether the host runs this prompt on the base alone (no image, and text not routed through the plug-in).</summary>
    private bool ToBase(EvalPrompt prompt) => !prompt.HasImages && !_textThroughPlugin;

    /// <summary>
    /// The prompt in the design's layout: the parts before its last piece (text and images), that piece's text, and whether
    /// it is the first piece (which carries the special tokens).
    /// </summary>
    private (List<PromptPart> Parts, string Last, bool First) Split(EvalPrompt prompt)
    {
        var laid = _layout.Arrange(prompt.Text, prompt.ImagePaths.Count, throughPlugin: true);
        var parts = new List<PromptPart>();
        int image = 0;
        for (int i = 0; i < laid.Pieces.Count - 1; i++)
        {
            var ids = Encode(laid.Piece(i), i == 0);
            if (ids.Length > 0) parts.Add(new TextPart(ids));
            for (int k = 0; k < laid.Pieces[i].ImagesAfter; k++) parts.Add(new ImagePart(ImageDecoder.Load(prompt.ImagePaths[image++])));
        }
        return (parts, laid.Piece(laid.Pieces.Count - 1), laid.Pieces.Count == 1);
    }

    private int[] Encode(string text, bool first) => _tokenizer.Encode(text, addSpecialTokens: first);

    private Tensor Forward(List<PromptPart> parts, int[] lastIds, bool lastPositionOnly)
    {
        var all = new List<PromptPart>(parts) { new TextPart(lastIds) };
        return _host.Forward(_plugin, new MultimodalPrompt(all), lastPositionOnly).ToF32();
    }

    private static int Common(int[] a, int[] b)
    {
        int n = Math.Min(a.Length, b.Length), i = 0;
        while (i < n && a[i] == b[i]) i++;
        return i;
    }
}
