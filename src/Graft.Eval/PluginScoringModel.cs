using Graft.Models.Imaging;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Tensors;

namespace Graft.Eval;

/// <summary>
/// The plug-in route: requests go through a <see cref="PluginHost"/> holding the base and the named plug-in, so a
/// request with images runs base + plug-in, and a text-only request runs the base alone or the plug-in, as the
/// plug-in was attached (<see cref="TextRoute"/>). The prompt text is split at its <c>&lt;image&gt;</c> placeholders
/// and each piece tokenised (special tokens, e.g. BOS, on the first piece only). Continuations are split off the last
/// text piece as <see cref="DecoderScoringModel"/> does; one forward scores all single-token candidates. Generation
/// is greedy with a full forward per token (the host's forward has no cache): fine for short answers.
/// </summary>
public sealed class PluginScoringModel : IScoringModel
{
    private readonly PluginHost _host;
    private readonly string _plugin;
    private readonly Tokenizer _tokenizer;
    private readonly HashSet<int> _eos;

    public PluginScoringModel(PluginHost host, string plugin, Tokenizer tokenizer, TextRoute textRoute)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(tokenizer);
        host.Plugin(plugin);
        _host = host;
        _plugin = plugin;
        _tokenizer = tokenizer;
        _eos = [.. host.Base.Config.EosTokenIds];
        if (tokenizer.EosTokenId is { } eos) _eos.Add(eos);
        Route = textRoute == TextRoute.Plugin ? $"plugin:{plugin} (text via plug-in)" : $"plugin:{plugin}";
    }

    public string Route { get; }
    public bool AcceptsImages => true;
    public int TruncatedPrompts => 0;

    public double[] LogLikelihoods(EvalPrompt prompt, IReadOnlyList<string> continuations)
    {
        if (continuations.Count == 0) throw new ArgumentException("no continuations to score", nameof(continuations));
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

    public string Generate(EvalPrompt prompt, int maxNewTokens, string? stop = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxNewTokens);
        var (parts, last, first) = Split(prompt);
        var ids = new List<int>(Encode(last, first));
        int promptLength = ids.Count;
        string text = "";
        for (int step = 0; step < maxNewTokens; step++)
        {
            int next = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(Forward(parts, ids.ToArray(), lastPositionOnly: true).Span);
            if (_eos.Contains(next)) break;
            ids.Add(next);
            var generated = ids.Skip(promptLength).Where(id => _tokenizer.IdToToken(id) is not null).ToArray();
            text = _tokenizer.Decode(generated, skipSpecialTokens: true);
            if (stop is not null && text.IndexOf(stop, StringComparison.Ordinal) is var at and >= 0) return text[..at];
        }
        return text;
    }

    /// <summary>The parts before the last text piece (text and images), that piece's text, and whether it is the first piece.</summary>
    private (List<PromptPart> Parts, string Last, bool First) Split(EvalPrompt prompt)
    {
        var pieces = prompt.Text.Split(EvalPrompt.ImagePlaceholder);
        if (pieces.Length - 1 != prompt.ImagePaths.Count)
            throw new ArgumentException($"the prompt has {pieces.Length - 1} {EvalPrompt.ImagePlaceholder} placeholder(s) for {prompt.ImagePaths.Count} image(s)");
        var parts = new List<PromptPart>();
        for (int i = 0; i < pieces.Length - 1; i++)
        {
            if (pieces[i].Length > 0) parts.Add(new TextPart(Encode(pieces[i], i == 0)));
            parts.Add(new ImagePart(ImageDecoder.Load(prompt.ImagePaths[i])));
        }
        return (parts, pieces[^1], pieces.Length == 1);
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
