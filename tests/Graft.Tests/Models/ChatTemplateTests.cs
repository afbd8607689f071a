using Graft.Models.Chat;
using Graft.Models.Tokenization;

namespace Graft.Tests.Models;

/// <summary>
/// Expected strings written by hand from the published templates: Qwen2-7B-Instruct and Qwen2.5-7B-Instruct
/// (ChatML with a default system turn), Llama-2-7b-chat-hf, Meta-Llama-3-8B-Instruct, internlm2-chat-7b, and
/// FastChat's vicuna_v1.1 conversation (Vicuna publishes no Jinja template).
/// </summary>
public sealed class ChatTemplateTests
{
    private static readonly ChatMessage[] Conversation =
    [
        ChatMessage.System("You are terse."),
        ChatMessage.User("Hi"),
        ChatMessage.Assistant("Hello!"),
        ChatMessage.User("Name a color."),
    ];

    private static readonly ChatMessage[] NoSystem = Conversation[1..];

    [Fact]
    public void ChatMLWithoutDefaultSystem()
    {
        var t = new ChatMLTemplate();
        Assert.Equal(
            "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            + "<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n", t.Render(Conversation, addGenerationPrompt: true));
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n", t.Render([ChatMessage.User("Hi")], addGenerationPrompt: false));
    }

    [Fact]
    public void Qwen2AddsItsDefaultSystemTurnOnlyWhenThereIsNone()
    {
        var t = new ChatMLTemplate("You are a helpful assistant.");
        Assert.Equal(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            + "<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n", t.Render(NoSystem, addGenerationPrompt: true));
        Assert.StartsWith("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user", t.Render(Conversation, true));
    }

    [Fact]
    public void Qwen25UsesItsOwnDefaultSystemTurn()
    {
        var t = new ChatMLTemplate("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
        Assert.Equal(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", t.Render([ChatMessage.User("Hi")], addGenerationPrompt: true));
    }

    [Fact]
    public void Llama2FoldsTheSystemIntoTheFirstTurnAndStripsContent()
    {
        var t = new Llama2ChatTemplate();
        Assert.Equal(
            "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Name a color. [/INST]",
            t.Render(Conversation, addGenerationPrompt: true));
        Assert.Equal("<s>[INST] Hi [/INST] Hello! </s><s>[INST] Name a color. [/INST]", t.Render(NoSystem, addGenerationPrompt: false));
        Assert.Equal("<s>[INST] padded [/INST]",
            t.Render([ChatMessage.User(" \n padded \u001f\t")], addGenerationPrompt: false));
        // The strip applies to the whole first turn after the system block is prepended: the system text keeps its spaces.
        Assert.Equal("<s>[INST] <<SYS>>\n  sys\n<</SYS>>\n\nq [/INST]", t.Render([ChatMessage.System("  sys"), ChatMessage.User("q  ")], false));
    }

    [Fact]
    public void Llama2RequiresAlternatingRoles()
    {
        var t = new Llama2ChatTemplate();
        var e = Assert.Throws<ArgumentException>(() => t.Render([ChatMessage.User("a"), ChatMessage.User("b")], true));
        Assert.Contains("alternate", e.Message);
        Assert.Throws<ArgumentException>(() => t.Render([ChatMessage.Assistant("a")], true));
    }

    [Fact]
    public void Llama3WrapsEveryTurnInHeadersAfterOneBos()
    {
        var t = new Llama3ChatTemplate();
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n", t.Render(Conversation, addGenerationPrompt: true));
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\ntrimmed<|eot_id|>",
            t.Render([ChatMessage.User("\n trimmed \n")], addGenerationPrompt: false));
    }

    [Fact]
    public void InternLM2IsChatMLAfterBos()
    {
        var t = new InternLM2ChatTemplate();
        Assert.Equal(
            "<s><|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            + "<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n", t.Render(Conversation, addGenerationPrompt: true));
        Assert.Equal("<s><|im_start|>user\nHi<|im_end|>\n", t.Render([ChatMessage.User("Hi")], addGenerationPrompt: false));
    }

    [Fact]
    public void VicunaFollowsFastChatV11()
    {
        var t = new VicunaChatTemplate();
        Assert.Equal("You are terse. USER: Hi ASSISTANT: Hello!</s>USER: Name a color. ASSISTANT:", t.Render(Conversation, addGenerationPrompt: true));
        Assert.Equal(VicunaChatTemplate.DefaultSystemPrompt + " USER: Hi ASSISTANT: Hello!</s>USER: Name a color. ",
            t.Render(NoSystem, addGenerationPrompt: false));
        Assert.Throws<ArgumentException>(() => t.Render([ChatMessage.User("a"), ChatMessage.System("b")], true));
    }

    [Fact]
    public void BadConversationsAreRejected()
    {
        var t = new ChatMLTemplate();
        Assert.Throws<ArgumentException>(() => t.Render([], true));
        var e = Assert.Throws<ArgumentException>(() => t.Render([new ChatMessage("tool", "x")], true));
        Assert.Contains("tool", e.Message);
    }

    [Fact]
    public void EncodingDoesNotDoubleTheBos()
    {
        var folder = Path.Combine(AppContext.BaseDirectory, "Golden", "tokenizer");
        var llama2 = Tokenizer.FromFolder(Path.Combine(folder, "llama2_style"));
        int bos = llama2.BosTokenId!.Value;
        var rendered = new Llama2ChatTemplate().Encode(llama2, [ChatMessage.User("Hi")], true);
        Assert.Equal(bos, rendered[0]);
        Assert.NotEqual(bos, rendered[1]);
        Assert.Single(rendered, id => id == bos);

        // Vicuna's text has no BOS, so the tokenizer adds its own, once.
        var vicuna = new VicunaChatTemplate().Encode(llama2, [ChatMessage.User("Hi")], true);
        Assert.Equal(bos, vicuna[0]);
        Assert.Single(vicuna, id => id == bos);

        var llama3 = Tokenizer.FromFolder(Path.Combine(folder, "llama3_style"));
        var ids = new Llama3ChatTemplate().Encode(llama3, [ChatMessage.User("Hi")], true);
        Assert.Single(ids, id => id == llama3.BosTokenId!.Value);
        Assert.Equal(llama3.BosTokenId!.Value, ids[0]);
    }
}
