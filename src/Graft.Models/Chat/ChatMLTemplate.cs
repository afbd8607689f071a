using System.Text;

namespace Graft.Models.Chat;

/// <summary>
/// ChatML as Qwen2 and Qwen2.5 publish it: "&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n" per message and
/// "&lt;|im_start|&gt;assistant\n" as the generation prompt. Qwen's templates add a default system turn when the
/// conversation does not start with one ("You are a helpful assistant." in Qwen2, "You are Qwen, created by
/// Alibaba Cloud. You are a helpful assistant." in Qwen2.5); <see cref="DefaultSystemPrompt"/> is read from the
/// checkpoint's own template, and is null for plain ChatML templates that add none.
/// </summary>
public sealed class ChatMLTemplate(string? defaultSystemPrompt = null) : ChatTemplate
{
    public override string Name => "chatml";
    public string? DefaultSystemPrompt { get; } = defaultSystemPrompt;

    protected override void RenderTo(StringBuilder text, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        if (DefaultSystemPrompt is not null && messages[0].Role != ChatRole.System)
            text.Append("<|im_start|>system\n").Append(DefaultSystemPrompt).Append("<|im_end|>\n");
        foreach (var m in messages) text.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
        if (addGenerationPrompt) text.Append("<|im_start|>assistant\n");
    }
}
