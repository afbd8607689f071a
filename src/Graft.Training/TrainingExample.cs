using Graft.Data;
using Graft.Models.Tokenization;
using Graft.Plugins;

namespace Graft.Training;

/// <summary>A piece of a tokenized training example: token ids (assistant ones are targets) or an image file.</summary>
public abstract record ExamplePart;

public sealed record ExampleText(int[] Ids, bool IsAssistant) : ExamplePart;

public sealed record ExampleImage(string Path) : ExamplePart;

/// <summary>
/// One training example, tokenized once: its parts in order, where it came from (for messages), whether it has an image,
/// and <see cref="Targets"/>, the tokens the loss is computed on (assistant tokens with a token before them).
/// </summary>
public sealed record TrainingExample(string Where, IReadOnlyList<ExamplePart> Parts)
{
    public bool HasImage { get; } = Parts.Any(p => p is ExampleImage);

    public int Targets { get; } = CountTargets(Parts);

    /// <summary>Text tokens (images not counted).</summary>
    public int TextTokens => Parts.OfType<ExampleText>().Sum(p => p.Ids.Length);

    /// <summary>
    /// Tokenizes <paramref name="prompt"/> exactly as evaluation tokenizes its requests: the text is laid out as the
    /// plug-in's design asks (<paramref name="layout"/>; a text-only example runs through the plug-in, as training runs it)
    /// and each piece encoded on its own, the tokenizer's special tokens (BOS) on the first piece only, even when it is
    /// empty. Targets are marked by their character spans: the tokens of a piece that follow the encoding of the text
    /// before a span (its common prefix with the piece's encoding) up to those that follow the text through its end, so
    /// the context before each target is, token for token, the request evaluation would send.
    /// </summary>
    public static TrainingExample Encode(FormattedPrompt prompt, PromptLayout layout, Tokenizer tokenizer, int vocabSize, string where)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(tokenizer);
        foreach (var target in prompt.Targets)
            if (prompt.Text[target].Contains(PromptFormats.ImagePlaceholder, StringComparison.Ordinal))
                throw new ArgumentException($"{where}: an answer holds an image placeholder; images belong to the question");
        LaidOutPrompt laid;
        try
        {
            // A conversation rendered by its chat template has its images placed already (inside the user turn).
            laid = (prompt.ImagesPlaced ? PromptLayout.AtPlaceholders : layout).Arrange(prompt.Text, prompt.ImagePaths.Count, throughPlugin: true);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{where}: {e.Message}", e);
        }
        var targets = prompt.Targets.Select(t =>
        {
            var (start, length) = t.GetOffsetAndLength(prompt.Text.Length);
            return laid.Position(start)..laid.Position(start + length);
        }).ToList();
        var parts = new List<ExamplePart>();
        int image = 0;
        for (int i = 0; i < laid.Pieces.Count; i++)
        {
            var (pieceStart, pieceLength) = laid.Pieces[i].Range.GetOffsetAndLength(laid.Text.Length);
            if (i == 0 || pieceLength > 0) AddPiece(parts, laid.Piece(i), pieceStart, i == 0 && prompt.AddSpecialTokens, targets, tokenizer, vocabSize, where);
            for (int k = 0; k < laid.Pieces[i].ImagesAfter; k++) parts.Add(new ExampleImage(prompt.ImagePaths[image++]));
        }
        if (prompt.EndsWithEos && tokenizer.EosTokenId is int eos)
        {
            if (eos >= vocabSize) throw new ArgumentException($"{where}: the tokenizer's end-of-sequence id {eos} is outside the base's vocabulary of {vocabSize}");
            parts.Add(new ExampleText([eos], IsAssistant: true));
        }
        return new TrainingExample(where, parts);
    }

    /// <summary>
    /// The example shortened by <paramref name="tokens"/> tokens from the end, never into an image; null when that would
    /// reach an image or leave no target.
    /// </summary>
    public TrainingExample? Truncated(int tokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        var parts = Parts.ToList();
        while (tokens > 0)
        {
            if (parts.Count == 0 || parts[^1] is not ExampleText last) return null;
            if (last.Ids.Length > tokens)
            {
                parts[^1] = last with { Ids = last.Ids[..^tokens] };
                tokens = 0;
            }
            else
            {
                tokens -= last.Ids.Length;
                parts.RemoveAt(parts.Count - 1);
            }
        }
        var shorter = new TrainingExample(Where, parts);
        return shorter.Targets > 0 ? shorter : null;
    }

    /// <summary>The example as a request, each image given by <paramref name="image"/> (decoded pixels or cached features).</summary>
    public MultimodalPrompt ToPrompt(Func<string, ImagePart> image) =>
        new(Parts.Select(p => p switch
        {
            ExampleText text => (PromptPart)new TextPart(text.Ids, text.IsAssistant),
            ExampleImage picture => image(picture.Path),
            _ => throw new InvalidOperationException($"unknown example part {p.GetType().Name}"),
        }).ToList());

    /// <summary>One piece of the laid-out text, which starts at <paramref name="pieceStart"/>; <paramref name="targets"/> are spans of that text.</summary>
    private static void AddPiece(List<ExamplePart> parts, string piece, int pieceStart, bool first, IReadOnlyList<Range> targets, Tokenizer tokenizer, int vocabSize, string where)
    {
        var ids = tokenizer.Encode(piece, addSpecialTokens: first);
        foreach (int id in ids)
            if ((uint)id >= (uint)vocabSize)
                throw new ArgumentException($"{where}: token id {id} is outside the base's vocabulary of {vocabSize}; is the tokenizer the base's?");
        var assistant = new bool[ids.Length];
        foreach (var target in targets)
        {
            int start = target.Start.Value, length = target.End.Value - start;
            int from = Math.Max(start, pieceStart) - pieceStart, to = Math.Min(start + length, pieceStart + piece.Length) - pieceStart;
            if (to <= from) continue;
            int begin = CommonPrefix(tokenizer.Encode(piece[..from], addSpecialTokens: first), ids);
            int end = CommonPrefix(tokenizer.Encode(piece[..to], addSpecialTokens: first), ids);
            for (int k = begin; k < end; k++) assistant[k] = true;
        }
        int run = 0;
        for (int k = 1; k <= ids.Length; k++)
        {
            if (k < ids.Length && assistant[k] == assistant[run]) continue;
            parts.Add(new ExampleText(ids[run..k], assistant[run]));
            run = k;
        }
    }

    private static int CountTargets(IReadOnlyList<ExamplePart> parts)
    {
        int count = 0;
        bool first = true;
        foreach (var part in parts)
        {
            if (part is ExampleText { IsAssistant: true } text) count += first ? text.Ids.Length - 1 : text.Ids.Length;
            first = false;
        }
        return count;
    }

    private static int CommonPrefix(int[] a, int[] b)
    {
        int n = Math.Min(a.Length, b.Length), i = 0;
        while (i < n && a[i] == b[i]) i++;
        return i;
    }
}
