using System.Text;

namespace Graft.Models.Chat;

/// <summary>
/// Vicuna v1.1 (also v1.3, v1.5 and LLaVA-1.5's "v1" conversations), which publishes no Jinja template: FastChat's
/// vicuna_v1.1 conversation, "{system} USER: {user} ASSISTANT: {assistant}&lt;/s&gt;USER: ... ASSISTANT:". The system
/// prompt defaults to FastChat's. The text has no BOS: the Llama tokenizer adds it when encoding.
/// </summary>
public sealed class VicunaChatTemplate(string eosToken = "</s>") : ChatTemplate
{
    public const string DefaultSystemPrompt =
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

    public override string Name => "vicuna";

    protected override void RenderTo(StringBuilder text, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        int first = messages[0].Role == ChatRole.System ? 1 : 0;
        text.Append(first == 1 ? messages[0].Content : DefaultSystemPrompt).Append(' ');
        for (int i = first; i < messages.Count; i++)
        {
            var m = messages[i];
            if (m.Role == ChatRole.System || (m.Role == ChatRole.User) != ((i - first) % 2 == 0))
                throw new ArgumentException($"message {i} is '{m.Role}': after the first system message, roles must alternate user/assistant/user/assistant/...", nameof(messages));
            if (m.Role == ChatRole.User) text.Append("USER: ").Append(m.Content).Append(' ');
            else text.Append("ASSISTANT: ").Append(m.Content).Append(eosToken);
        }
        if (addGenerationPrompt) text.Append("ASSISTANT:");
    }
}
