using Graft.Models.Tokenization;

namespace Graft.Plugins;

/// <summary>
/// How a design lays a request's text and images out, as its paper does. The trainer, evaluation, the commands and the
/// server all ask the plug-in for it (<see cref="IPlugin.Layout"/>), so a plug-in is trained on exactly the layout it is
/// later asked in, and no layer keeps its own copy of a design's layout.
/// </summary>
/// <remarks>
/// A prompt's text marks each image with <see cref="Placeholder"/> (where LLaVA's data puts it). <see cref="Arrange"/> cuts
/// the text into pieces: each piece is encoded on its own, with the tokenizer's special tokens (BOS) on the first piece
/// only, even when that piece is empty (as LLaVA's tokenizer_image_token does). Each piece is followed by zero or more
/// images. The layouts:
/// <list type="bullet">
/// <item><see cref="AtPlaceholders"/> (LLaVA-1.5; Bridge, IAA and WINGS are built on its code; Mono-InternVL's plug-in
///   wraps each image in its own &lt;img&gt; … &lt;/img&gt; marker embeddings): each image where its placeholder is, so
///   "&lt;image&gt;\n{prompt}" gives [BOS] [image] "\n{prompt}".</item>
/// <item><see cref="Leading"/> (LaVIN; MMA): [BOS] "Image: " [image] {prompt}. The placeholders and the line break
///   that follows each one (or else the one before it) are removed. A text-only request routed through the plug-in gets
///   [BOS] "Image: N/A" {prompt}. A text-only request on the base route is never touched.</item>
/// </list>
/// </remarks>
public sealed class PromptLayout
{
    /// <summary>Where the text marks an image (LLaVA's placeholder).</summary>
    public const string Placeholder = "<image>";

    private PromptLayout(string? imageLead, string? textOnlyLead)
    {
        ImageLead = imageLead;
        TextOnlyLead = textOnlyLead;
    }

    /// <summary>Each image where its placeholder is (LLaVA-1.5).</summary>
    public static PromptLayout AtPlaceholders { get; } = new(null, null);

    /// <summary>
    /// Every image after <paramref name="imageLead"/> at the start (after BOS), and a text-only request routed through the
    /// plug-in after <paramref name="textOnlyLead"/> (LaVIN's "Image: " and "Image: N/A").
    /// </summary>
    public static PromptLayout Leading(string imageLead, string textOnlyLead)
    {
        ArgumentException.ThrowIfNullOrEmpty(imageLead);
        ArgumentException.ThrowIfNullOrEmpty(textOnlyLead);
        return new PromptLayout(imageLead, textOnlyLead);
    }

    /// <summary>The text before the images, which move there from their placeholders; null when images stay at their placeholders.</summary>
    public string? ImageLead { get; }

    /// <summary>The text before a text-only request that runs through the plug-in; null when such a request is left as it is.</summary>
    public string? TextOnlyLead { get; }

    /// <summary>
    /// <paramref name="text"/>, holding one <see cref="Placeholder"/> per image (<paramref name="images"/>), laid out as the
    /// design asks. <paramref name="throughPlugin"/> says whether a text-only request runs through the plug-in (else the base
    /// alone runs it, and it is left as it is). <paramref name="leadAfter"/> characters stay before a lead: a
    /// beginning-of-sequence token that a chat template writes as text.
    /// </summary>
    public LaidOutPrompt Arrange(string text, int images, bool throughPlugin, int leadAfter = 0)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentOutOfRangeException.ThrowIfNegative(images);
        ArgumentOutOfRangeException.ThrowIfNegative(leadAfter);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(leadAfter, text.Length);
        var at = Placeholders(text);
        if (at.Count != images) throw new ArgumentException($"the prompt has {at.Count} '{Placeholder}' placeholder(s) for {images} image(s)");
        string? lead = images > 0 ? ImageLead : throughPlugin ? TextOnlyLead : null;
        if (lead is null) return images > 0 ? AtEachPlaceholder(text, at) : new LaidOutPrompt(text, [new LaidOutPiece(0..text.Length, 0)], []);
        var removed = at.Select(start => Removal(text, start)).Where(r => r.Start.Value >= leadAfter).ToList();
        var rest = new System.Text.StringBuilder();
        int from = leadAfter;
        foreach (var range in removed)
        {
            rest.Append(text, from, range.Start.Value - from);
            from = range.End.Value;
        }
        rest.Append(text, from, text.Length - from);
        int split = leadAfter + lead.Length;
        string laid = text[..leadAfter] + lead + rest;
        return new LaidOutPrompt(laid, [new LaidOutPiece(0..split, images), new LaidOutPiece(split..laid.Length, 0)],
            [new LaidOutPrompt.Edit(leadAfter, leadAfter, lead.Length), .. removed.Select(r => new LaidOutPrompt.Edit(r.Start.Value, r.End.Value, 0))]);
    }

    /// <summary>
    /// A prompt given as token ids and images (as `graft logits` takes it) laid out as the design asks: with a lead, its
    /// tokens (no special tokens) come right after a leading BOS, then the images in order, then the prompt's text parts
    /// without the images. <paramref name="tokenizer"/> is opened only for a layout that adds text.
    /// </summary>
    public MultimodalPrompt Arrange(MultimodalPrompt prompt, Func<Tokenizer> tokenizer, bool throughPlugin)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(tokenizer);
        string? lead = prompt.HasImage ? ImageLead : throughPlugin ? TextOnlyLead : null;
        if (lead is null) return prompt;
        return Lead(prompt, tokenizer(), lead);
    }

    private static MultimodalPrompt Lead(MultimodalPrompt prompt, Tokenizer tokenizer, string lead)
    {
        var texts = prompt.Parts.OfType<TextPart>().ToList();
        var head = new List<int>();
        if (texts.Count > 0 && tokenizer.BosTokenId is int bos && texts[0].Ids[0] == bos)
        {
            head.Add(bos);
            texts[0] = texts[0] with { Ids = texts[0].Ids[1..] };
        }
        head.AddRange(tokenizer.Encode(lead, addSpecialTokens: false));
        return new MultimodalPrompt([new TextPart(head.ToArray()), .. prompt.Parts.OfType<ImagePart>(), .. texts.Where(t => t.Ids.Length > 0)]);
    }

    private static List<int> Placeholders(string text)
    {
        var at = new List<int>();
        for (int i = text.IndexOf(Placeholder, StringComparison.Ordinal); i >= 0; i = text.IndexOf(Placeholder, i + Placeholder.Length, StringComparison.Ordinal))
            at.Add(i);
        return at;
    }

    /// <summary>The placeholder at <paramref name="start"/> with the line break after it, or else the one before it.</summary>
    private static Range Removal(string text, int start)
    {
        int end = start + Placeholder.Length;
        if (end < text.Length && text[end] == '\n') return start..(end + 1);
        return start > 0 && text[start - 1] == '\n' ? (start - 1)..end : start..end;
    }

    private static LaidOutPrompt AtEachPlaceholder(string text, List<int> at)
    {
        var pieces = new List<LaidOutPiece>(at.Count + 1);
        int from = 0;
        foreach (int start in at)
        {
            pieces.Add(new LaidOutPiece(from..start, 1));
            from = start + Placeholder.Length;
        }
        pieces.Add(new LaidOutPiece(from..text.Length, 0));
        return new LaidOutPrompt(text, pieces, []);
    }
}

/// <summary>A range of a laid-out prompt's text, encoded on its own, and how many images follow it.</summary>
public readonly record struct LaidOutPiece(Range Range, int ImagesAfter);

/// <summary>
/// A prompt in its design's layout (<see cref="PromptLayout.Arrange(string, int, bool, int)"/>): <see cref="Text"/> cut into
/// <see cref="Pieces"/>, in order; the last piece has no image after it.
/// </summary>
public sealed class LaidOutPrompt
{
    private readonly IReadOnlyList<Edit> _edits;

    internal LaidOutPrompt(string text, IReadOnlyList<LaidOutPiece> pieces, IReadOnlyList<Edit> edits)
    {
        Text = text;
        Pieces = pieces;
        _edits = edits;
    }

    /// <summary>The original text's [Start, End) removed and <paramref name="Inserted"/> characters put in its place.</summary>
    internal readonly record struct Edit(int Start, int End, int Inserted);

    public string Text { get; }
    public IReadOnlyList<LaidOutPiece> Pieces { get; }

    public int Images => Pieces.Sum(p => p.ImagesAfter);

    /// <summary>The text of piece <paramref name="index"/>.</summary>
    public string Piece(int index) => Text[Pieces[index].Range];

    /// <summary>The laid-out text with a <see cref="PromptLayout.Placeholder"/> wherever an image goes.</summary>
    public string Marked()
    {
        var text = new System.Text.StringBuilder();
        for (int i = 0; i < Pieces.Count; i++)
        {
            text.Append(Piece(i));
            for (int k = 0; k < Pieces[i].ImagesAfter; k++) text.Append(PromptLayout.Placeholder);
        }
        return text.ToString();
    }

    /// <summary>
    /// Where the character at <paramref name="offset"/> of the original text is in <see cref="Text"/>; a removed character
    /// maps to where the removed text was.
    /// </summary>
    public int Position(int offset)
    {
        int position = offset;
        foreach (var edit in _edits)
        {
            if (offset >= edit.End) position += edit.Inserted - (edit.End - edit.Start);
            else if (offset > edit.Start) position -= offset - edit.Start;
        }
        return position;
    }

    /// <summary>
    /// The request: each piece encoded by <paramref name="tokenizer"/> (special tokens on the first piece when
    /// <paramref name="addSpecialTokens"/>; empty later pieces left out) and <paramref name="images"/> in order after theirs.
    /// </summary>
    public MultimodalPrompt Encode(Tokenizer tokenizer, IReadOnlyList<ImagePart> images, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count != Images) throw new ArgumentException($"the prompt places {Images} image(s), {images.Count} given", nameof(images));
        var parts = new List<PromptPart>();
        int next = 0;
        for (int i = 0; i < Pieces.Count; i++)
        {
            var ids = tokenizer.Encode(Piece(i), addSpecialTokens: i == 0 && addSpecialTokens);
            if (ids.Length > 0) parts.Add(new TextPart(ids));
            for (int k = 0; k < Pieces[i].ImagesAfter; k++) parts.Add(images[next++]);
        }
        return new MultimodalPrompt(parts);
    }
}
