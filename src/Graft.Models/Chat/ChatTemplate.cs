using System.Text;
using Graft.Models.Tokenization;

namespace Graft.Models.Chat;

/// <summary>
/// Renders a conversation to the prompt text a chat checkpoint was trained on, character for character as
/// its published Jinja template does (apply_chat_template with tokenize=False).
/// </summary>
public abstract class ChatTemplate
{
    /// <summary>The name that selects it (<see cref="ChatTemplates.Names"/>).</summary>
    public abstract string Name { get; }

    /// <summary>
    /// The template's exact Jinja text: the checkpoint's chat_template it was recognised in, or the built-in text of a
    /// template chosen by name; null for a named template that has no Jinja text of its own (Vicuna's is FastChat's code).
    /// </summary>
    public string? Source { get; internal set; }

    /// <param name="addGenerationPrompt">End with the header that opens the assistant's answer, where the family has one.</param>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (messages.Count == 0) throw new ArgumentException("a conversation needs at least one message", nameof(messages));
        for (int i = 0; i < messages.Count; i++)
        {
            var m = messages[i] ?? throw new ArgumentException($"message {i} is null", nameof(messages));
            if (m.Role is not (ChatRole.System or ChatRole.User or ChatRole.Assistant))
                throw new ArgumentException($"message {i} has role '{m.Role}'; expected system, user or assistant", nameof(messages));
            if (m.Content is null) throw new ArgumentException($"message {i} has no content", nameof(messages));
        }
        var text = new StringBuilder();
        RenderTo(text, messages, addGenerationPrompt);
        return text.ToString();
    }

    /// <summary>
    /// Renders and encodes. The BOS rule: when the rendered text already begins with the tokenizer's BOS token
    /// (Llama 2/3, InternLM2) it is encoded without special tokens, as apply_chat_template does, so BOS is not
    /// doubled; otherwise (ChatML, Vicuna) the tokenizer adds what it adds to any text (Llama's BOS, Qwen's nothing).
    /// </summary>
    public int[] Encode(Tokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var text = Render(messages, addGenerationPrompt);
        bool rendersBos = tokenizer.BosToken is { Length: > 0 } bos && text.StartsWith(bos, StringComparison.Ordinal);
        return tokenizer.Encode(text, addSpecialTokens: !rendersBos);
    }

    protected abstract void RenderTo(StringBuilder text, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt);

    /// <summary>Python's str.strip(), which Jinja's .strip() and |trim call: .NET's Trim plus U+001C..U+001F.</summary>
    protected static string PythonStrip(string s)
    {
        int start = 0, end = s.Length;
        while (start < end && IsPythonSpace(s[start])) start++;
        while (end > start && IsPythonSpace(s[end - 1])) end--;
        return s[start..end];
    }

    private static bool IsPythonSpace(char c) => char.IsWhiteSpace(c) || c is >= '\u001c' and <= '\u001f';
}
