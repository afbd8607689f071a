using System.Text;

namespace Graft.Models.Chat;

/// <summary>
/// The template for a base model with no chat training: a conversation as the question-and-answer transcript a base
/// continues, each answer ended by the end-of-sequence token so that a reply stops where a document would. A system
/// message is its own paragraph; a user message is "Question: {content}\n"; an assistant message is
/// "Answer: {content}\n\n" and eos_token; the generation prompt is "Answer:", so the reply's first token carries its
/// leading space as it does in the transcripts a base reads. Contents are trimmed, as Jinja's |trim does.
/// </summary>
/// <remarks>
/// Checkpoints carry it as <see cref="Jinja"/> in tokenizer_config.json's chat_template (the demo's base does), so it is
/// rendered like any other checkpoint's template; this class renders that text character for character.
/// </remarks>
public sealed class PlainChatTemplate(string eosToken) : ChatTemplate
{
    public const string TemplateName = "plain";

    /// <summary>The template as Hugging Face's apply_chat_template runs it.</summary>
    public const string Jinja =
        "{%- for message in messages -%}"
        + "{%- if message['role'] == 'system' -%}{{ message['content'] | trim + '\\n\\n' }}"
        + "{%- elif message['role'] == 'user' -%}{{ 'Question: ' + message['content'] | trim + '\\n' }}"
        + "{%- elif message['role'] == 'assistant' -%}{{ 'Answer: ' + message['content'] | trim + '\\n\\n' + eos_token }}"
        + "{%- else -%}{{ raise_exception('the plain template takes system, user and assistant messages') }}"
        + "{%- endif -%}"
        + "{%- endfor -%}"
        + "{%- if add_generation_prompt -%}{{ 'Answer:' }}{%- endif -%}";

    public override string Name => TemplateName;

    protected override void RenderTo(StringBuilder text, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt)
    {
        foreach (var m in messages)
        {
            if (m.Role == ChatRole.System) text.Append(PythonStrip(m.Content)).Append("\n\n");
            else if (m.Role == ChatRole.User) text.Append("Question: ").Append(PythonStrip(m.Content)).Append('\n');
            else text.Append("Answer: ").Append(PythonStrip(m.Content)).Append("\n\n").Append(eosToken);
        }
        if (addGenerationPrompt) text.Append("Answer:");
    }
}
