using Graft.Models.Chat;
using Graft.Models.Tokenization;

namespace Graft.Tests.Models;

/// <summary>Detection from the chat_template strings the checkpoints publish (abridged where long).</summary>
public sealed class ChatTemplateDetectionTests
{
    private const string Qwen2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    private const string Qwen25 = "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}";
    private const string Llama2 = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
    private const string Llama3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    private const string InternLM2 = "{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    private const string Vicuna = "{% for message in messages %}{% if message['role'] == 'user' %}{{ 'USER: ' + message['content'] + ' ' }}{% elif message['role'] == 'assistant' %}{{ 'ASSISTANT: ' + message['content'] + eos_token }}{% endif %}{% endfor %}";

    [Theory]
    [InlineData(Qwen2, null, "chatml")]
    [InlineData(Qwen25, "Qwen2ForCausalLM", "chatml")]
    [InlineData(Llama2, "LlamaForCausalLM", "llama2")]
    [InlineData(Llama3, "LlamaForCausalLM", "llama3")]
    [InlineData(InternLM2, null, "internlm2")]
    [InlineData(Vicuna, "LlamaForCausalLM", "vicuna")]
    [InlineData(null, "InternLM2ForCausalLM", "internlm2")]
    [InlineData(null, "Qwen2ForCausalLM", "chatml")]
    public void DetectsTheFamily(string? jinja, string? architecture, string expected) =>
        Assert.Equal(expected, ChatTemplates.Detect(jinja, architecture)!.Name);

    [Fact]
    public void ChatMLKeepsTheCheckpointsDefaultSystemPrompt()
    {
        Assert.Equal("You are a helpful assistant.", ((ChatMLTemplate)ChatTemplates.Detect(Qwen2)!).DefaultSystemPrompt);
        Assert.Equal("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", ((ChatMLTemplate)ChatTemplates.Detect(Qwen25)!).DefaultSystemPrompt);
        var plain = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}";
        Assert.Null(((ChatMLTemplate)ChatTemplates.Detect(plain)!).DefaultSystemPrompt);
        Assert.Null(((ChatMLTemplate)ChatTemplates.Detect(null, "Qwen2ForCausalLM")!).DefaultSystemPrompt);
    }

    [Fact]
    public void AnOverrideWinsAndUnknownNamesAreListed()
    {
        Assert.Equal("vicuna", ChatTemplates.Resolve("vicuna", Llama3).Name);
        Assert.Equal("llama3", ChatTemplates.Resolve("LLAMA3", null).Name);
        foreach (var name in ChatTemplates.Names) Assert.Equal(name, ChatTemplates.Create(name).Name);
        var e = Assert.Throws<ArgumentException>(() => ChatTemplates.Resolve("alpaca", Llama3));
        Assert.Contains("chatml, llama2, llama3, internlm2, vicuna", e.Message);
    }

    [Fact]
    public void NoTemplateAndNoOverrideIsAClearError()
    {
        Assert.Null(ChatTemplates.Detect(null, "LlamaForCausalLM"));
        Assert.Null(ChatTemplates.Detect("{{ messages }}"));
        var e = Assert.Throws<InvalidOperationException>(() => ChatTemplates.Resolve(null, null, "LlamaForCausalLM"));
        Assert.Contains("no chat template", e.Message);
        Assert.Contains("chatml, llama2, llama3, internlm2, vicuna", e.Message);
        Assert.Contains("not one Graft recognises", Assert.Throws<InvalidOperationException>(() => ChatTemplates.Resolve(null, "{{ x }}")).Message);
    }

    [Fact]
    public void ForCheckpointReadsTheTokenizerAndConfig()
    {
        var folder = Path.Combine(AppContext.BaseDirectory, "Golden", "tokenizer");
        var qwen = Tokenizer.FromFolder(Path.Combine(folder, "qwen2_style"));
        Assert.Equal("chatml", ChatTemplates.ForCheckpoint(Path.Combine(folder, "qwen2_style"), qwen).Name);
        var llama2 = Tokenizer.FromFolder(Path.Combine(folder, "llama2_style"));
        Assert.Throws<InvalidOperationException>(() => ChatTemplates.ForCheckpoint(Path.Combine(folder, "llama2_style"), llama2));
        var template = ChatTemplates.ForCheckpoint(Path.Combine(folder, "llama2_style"), llama2, "llama2");
        Assert.StartsWith("<s>[INST] ", template.Render([ChatMessage.User("x")], true));
    }
}
