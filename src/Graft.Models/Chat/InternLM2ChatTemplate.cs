using System.Text;

namespace Graft.Models.Chat;

/// <summary>
/// internlm2-chat's template: BOS, then ChatML turns. No default system turn: InternLM's meta instruction is
/// added by its Python chat() helper, not by the template, so callers who want it pass it as a system message.
/// </summary>
public sealed class InternLM2ChatTemplate(string bosToken = "<s>") : ChatTemplate
{
    public override string Name => "internlm2";

    protected override void RenderTo(StringBuilder text, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        text.Append(bosToken);
        foreach (var m in messages) text.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
        if (addGenerationPrompt) text.Append("<|im_start|>assistant\n");
    }
}
