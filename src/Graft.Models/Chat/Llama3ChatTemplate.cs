using System.Text;

namespace Graft.Models.Chat;

/// <summary>
/// Meta-Llama-3-Instruct's template: BOS, then "&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\n{trimmed
/// content}&lt;|eot_id|&gt;" per message; the generation prompt is the assistant header. Llama 3.1's template (tools,
/// and a "Cutting Knowledge Date" system preamble) is not reproduced.
/// </summary>
public sealed class Llama3ChatTemplate(string bosToken = "<|begin_of_text|>") : ChatTemplate
{
    public override string Name => "llama3";

    protected override void RenderTo(StringBuilder text, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        text.Append(bosToken);
        foreach (var m in messages)
            text.Append("<|start_header_id|>").Append(m.Role).Append("<|end_header_id|>\n\n").Append(PythonStrip(m.Content)).Append("<|eot_id|>");
        if (addGenerationPrompt) text.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
    }
}
