using Graft.Models.Chat;
using Graft.Models.Tokenization;

namespace Graft.Plugins;

/// <summary>
/// A conversation rendered by a chat template for a plug-in: <see cref="Text"/> holds one <see cref="PromptLayout.Placeholder"/>
/// per image, already where the design puts it; <see cref="Targets"/> are the character spans a trainer computes the loss
/// on (each assistant turn's content and the end-of-turn token after it; none for a request); <see cref="RendersBos"/>
/// says the text begins with the tokenizer's beginning-of-sequence token, so encoding must not add another.
/// </summary>
public sealed record RenderedChat(string Text, int Images, IReadOnlyList<Range> Targets, bool RendersBos)
{
    /// <summary>The request: the text cut at its placeholders, each piece encoded on its own (special tokens on the first only, and only when the template wrote no BOS), the images in order.</summary>
    public MultimodalPrompt Encode(Tokenizer tokenizer, IReadOnlyList<ImagePart> images)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return PromptLayout.AtPlaceholders.Arrange(Text, Images, throughPlugin: false).Encode(tokenizer, images, addSpecialTokens: !RendersBos);
    }
}

/// <summary>
/// The one way a plug-in's conversation becomes a prompt, for the trainer, evaluation, the commands and the server alike:
/// each message's images are placed inside that message as the design asks (<see cref="IPlugin.Layout"/>: at LLaVA's
/// placeholder, or behind LaVIN's "Image: " lead at the start of the message), then the chat template renders the whole
/// conversation. So the design's layout lives inside the template's user turn, and a plug-in is asked in exactly the text
/// it was trained on.
/// </summary>
public static class ChatPrompts
{
    /// <summary>
    /// Renders <paramref name="messages"/>, message i carrying <paramref name="images"/>[i] images (placed at its
    /// placeholders, or before its text when it has none). <paramref name="throughPlugin"/>: a conversation without
    /// images runs through the plug-in (its first user message then gets the design's text-only lead, e.g. "Image: N/A").
    /// With <paramref name="endOfTurn"/> (the tokens that end a turn: the tokenizer's and the checkpoint's end-of-sequence
    /// tokens), every assistant message's content and the end-of-turn token the template writes after it are marked as
    /// <see cref="RenderedChat.Targets"/>.
    /// </summary>
    public static RenderedChat Render(PromptLayout layout, ChatTemplate template, Tokenizer tokenizer, IReadOnlyList<ChatMessage> messages,
        IReadOnlyList<int> images, bool addGenerationPrompt, bool throughPlugin = false, IReadOnlyCollection<string>? endOfTurn = null)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(messages);
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count != messages.Count) throw new ArgumentException($"{images.Count} image counts for {messages.Count} messages", nameof(images));
        int total = images.Sum();
        int leadAt = total == 0 && throughPlugin ? FirstUser(messages) : -1;
        var placed = new ChatMessage[messages.Count];
        for (int i = 0; i < messages.Count; i++)
        {
            if (images[i] > 0 && messages[i].Role != ChatRole.User)
                throw new ArgumentException($"message {i} is '{messages[i].Role}': images belong to user messages");
            placed[i] = images[i] > 0 || i == leadAt ? messages[i] with { Content = Place(layout, messages[i].Content, images[i]) } : messages[i];
        }
        string text = template.Render(placed, addGenerationPrompt);
        int marked = Count(text, PromptLayout.Placeholder);
        if (marked != total)
            throw new ArgumentException(total == 0
                ? $"the conversation holds '{PromptLayout.Placeholder}' but no image; attach one, or leave the placeholder out"
                : $"the {template.Name} chat template wrote {marked} '{PromptLayout.Placeholder}' placeholder(s) for {total} image(s)");
        bool rendersBos = tokenizer.BosToken is { Length: > 0 } bos && text.StartsWith(bos, StringComparison.Ordinal);
        var targets = endOfTurn is null ? [] : Targets(template, placed, text, endOfTurn);
        return new RenderedChat(text, total, targets, rendersBos);
    }

    /// <summary>The tokens that end an assistant turn: the tokenizer's end-of-sequence token and the checkpoint's (generation_config.json's eos_token_id).</summary>
    public static IReadOnlyCollection<string> EndOfTurnTokens(Tokenizer tokenizer, IEnumerable<int> eosTokenIds)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(eosTokenIds);
        var tokens = new HashSet<string>(StringComparer.Ordinal);
        if (tokenizer.EosToken is { Length: > 0 } eos) tokens.Add(eos);
        foreach (int id in eosTokenIds)
            if (tokenizer.IdToToken(id) is { Length: > 0 } token) tokens.Add(token);
        return tokens;
    }

    /// <summary>One message's content with its images placed as the design asks, each marked by a placeholder.</summary>
    private static string Place(PromptLayout layout, string content, int images)
    {
        string marked = images == 0 || content.Contains(PromptLayout.Placeholder, StringComparison.Ordinal)
            ? content
            : string.Concat(Enumerable.Repeat(PromptLayout.Placeholder + "\n", images)) + content;
        return layout.Arrange(marked, images, throughPlugin: true).Marked();
    }

    /// <summary>
    /// The spans to train on: for each assistant message, everything the model writes after the request for it (the
    /// conversation before it with the generation prompt) through its content and, after at most whitespace, the
    /// end-of-turn token that closes it. Found by rendering the conversation up to each turn, which a template that renders
    /// turn by turn keeps as a prefix of the whole conversation; so the context of every target is the request `graft chat`,
    /// the server and evaluation send for that turn.
    /// </summary>
    private static List<Range> Targets(ChatTemplate template, IReadOnlyList<ChatMessage> placed, string text, IReadOnlyCollection<string> endOfTurn)
    {
        var targets = new List<Range>();
        string full = template.Render(placed, addGenerationPrompt: false);
        for (int i = 0; i < placed.Count; i++)
        {
            if (placed[i].Role != ChatRole.Assistant) continue;
            if (i == 0) throw new ArgumentException("the conversation opens with an assistant message; an answer needs a question before it");
            string before = template.Render(placed.Take(i).ToArray(), addGenerationPrompt: true);
            string through = template.Render(placed.Take(i + 1).ToArray(), addGenerationPrompt: false);
            if (!through.StartsWith(before, StringComparison.Ordinal) || !full.StartsWith(through, StringComparison.Ordinal) || !text.StartsWith(through, StringComparison.Ordinal))
                throw new ArgumentException($"the {template.Name} chat template does not write the conversation turn by turn (the text before message {i} is not the request for it), so its answers cannot be marked for training");
            string content = placed[i].Content.Trim();
            if (content.Length == 0) continue;
            int start = through.IndexOf(content, before.Length, StringComparison.Ordinal);
            if (start < 0) throw new ArgumentException($"the {template.Name} chat template does not write message {i}'s content as it is, so it cannot be marked for training");
            int end = start + content.Length, next = end;
            while (next < through.Length && char.IsWhiteSpace(through[next])) next++;
            foreach (var token in endOfTurn)
                if (string.CompareOrdinal(through, next, token, 0, token.Length) == 0)
                {
                    end = next + token.Length;
                    break;
                }
            targets.Add(before.Length..end);
        }
        return targets;
    }

    private static int FirstUser(IReadOnlyList<ChatMessage> messages)
    {
        for (int i = 0; i < messages.Count; i++)
            if (messages[i].Role == ChatRole.User) return i;
        return -1;
    }

    private static int Count(string text, string marker)
    {
        int count = 0;
        for (int at = text.IndexOf(marker, StringComparison.Ordinal); at >= 0; at = text.IndexOf(marker, at + marker.Length, StringComparison.Ordinal)) count++;
        return count;
    }
}
