using System.Text;

namespace Graft.Models.Chat;

/// <summary>
/// Llama-2-chat's template: each user turn is "&lt;s&gt;[INST] {stripped content} [/INST]", each assistant turn
/// " {stripped content} &lt;/s&gt;"; a leading system message is folded into the first user turn as
/// "&lt;&lt;SYS&gt;&gt;\n{system}\n&lt;&lt;/SYS&gt;&gt;\n\n". Roles after the system message must alternate user/assistant,
/// starting with user. The template has no generation prompt: a prompt ending in "[/INST]" already asks for one.
/// </summary>
public sealed class Llama2ChatTemplate(string bosToken = "<s>", string eosToken = "</s>") : ChatTemplate
{
    public override string Name => "llama2";

    protected override void RenderTo(StringBuilder text, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        int first = messages[0].Role == ChatRole.System ? 1 : 0;
        string? system = first == 1 ? messages[0].Content : null;
        for (int i = first; i < messages.Count; i++)
        {
            var m = messages[i];
            int turn = i - first;
            if ((m.Role == ChatRole.User) != (turn % 2 == 0))
                throw new ArgumentException($"message {i} is '{m.Role}': conversation roles must alternate user/assistant/user/assistant/...", nameof(messages));
            var content = turn == 0 && system is not null ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + m.Content : m.Content;
            if (m.Role == ChatRole.User) text.Append(bosToken).Append("[INST] ").Append(PythonStrip(content)).Append(" [/INST]");
            else if (m.Role == ChatRole.Assistant) text.Append(' ').Append(PythonStrip(content)).Append(' ').Append(eosToken);
        }
    }
}
