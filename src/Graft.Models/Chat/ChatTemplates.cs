using System.Text.Json;
using System.Text.RegularExpressions;
using Graft.Models.Tokenization;

namespace Graft.Models.Chat;

/// <summary>
/// Picks the chat template of a checkpoint. An override name wins; otherwise the Jinja chat_template of
/// tokenizer_config.json is recognised by its markers ("&lt;|start_header_id|&gt;" Llama 3; "&lt;|im_start|&gt;"
/// ChatML, or InternLM2 when it also emits bos_token or the architecture is InternLM2; "[INST]" Llama 2;
/// "USER:" Vicuna); without a template, the architecture decides where it is unambiguous (InternLM2, Qwen2).
/// </summary>
public static partial class ChatTemplates
{
    public static IReadOnlyList<string> Names { get; } = ["chatml", "llama2", "llama3", "internlm2", "vicuna", PlainChatTemplate.TemplateName];

    /// <summary>The template called <paramref name="name"/>; a ChatML template keeps the default system prompt
    /// found in <paramref name="jinjaTemplate"/>, if any.</summary>
    public static ChatTemplate Create(string name, string? bosToken = null, string? eosToken = null, string? jinjaTemplate = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ChatTemplate template = name.ToLowerInvariant() switch
        {
            "chatml" => new ChatMLTemplate(jinjaTemplate is null ? null : ChatMLDefaultSystemPrompt(jinjaTemplate)),
            "llama2" => new Llama2ChatTemplate(bosToken ?? "<s>", eosToken ?? "</s>"),
            "llama3" => new Llama3ChatTemplate(bosToken ?? "<|begin_of_text|>"),
            "internlm2" => new InternLM2ChatTemplate(bosToken ?? "<s>"),
            "vicuna" => new VicunaChatTemplate(eosToken ?? "</s>"),
            PlainChatTemplate.TemplateName => new PlainChatTemplate(eosToken ?? ""),
            _ => throw new ArgumentException($"unknown chat template '{name}'; known templates: {string.Join(", ", Names)}", nameof(name)),
        };
        template.Source = template is PlainChatTemplate ? PlainChatTemplate.Jinja : null;
        return template;
    }

    /// <summary>
    /// The template a plug-in recorded (name and Jinja text, <paramref name="source"/>), for a checkpoint's tokens: the
    /// recorded text when it is one Graft renders, else the template of that name.
    /// </summary>
    public static ChatTemplate FromRecord(string name, string? source, string? bosToken, string? eosToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        var template = Create(name, bosToken, eosToken, source);
        if (source is not null) template.Source = source;
        return template;
    }

    /// <summary>The template the checkpoint's Jinja string or architecture names, or null when neither is recognised.</summary>
    public static ChatTemplate? Detect(string? jinjaTemplate, string? architecture = null, string? bosToken = null, string? eosToken = null)
    {
        var name = DetectName(jinjaTemplate, architecture);
        if (name is null) return null;
        var template = Create(name, bosToken, eosToken, jinjaTemplate);
        if (jinjaTemplate is not null) template.Source = jinjaTemplate;
        return template;
    }

    /// <summary>The override when given, else the detected template; neither is an error listing the names.</summary>
    public static ChatTemplate Resolve(string? overrideName, string? jinjaTemplate, string? architecture = null, string? bosToken = null, string? eosToken = null)
    {
        if (!string.IsNullOrEmpty(overrideName))
        {
            var named = Create(overrideName, bosToken, eosToken, jinjaTemplate);
            if (jinjaTemplate is not null && DetectName(jinjaTemplate, architecture) == named.Name) named.Source = jinjaTemplate;
            return named;
        }
        return Detect(jinjaTemplate, architecture, bosToken, eosToken) ?? throw new InvalidOperationException(
            (jinjaTemplate is null ? "the checkpoint has no chat template" : "the checkpoint's chat template is not one Graft recognises")
            + (architecture is null ? "" : $" (architecture {architecture})")
            + $"; name one of: {string.Join(", ", Names)}");
    }

    /// <summary>The template for a Hugging Face folder: the tokenizer's chat_template and config.json's architectures[0].</summary>
    public static ChatTemplate ForCheckpoint(string modelDir, Tokenizer tokenizer, string? overrideName = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return Resolve(overrideName, tokenizer.ChatTemplate, Architecture(modelDir), tokenizer.BosToken, tokenizer.EosToken);
    }

    private static string? DetectName(string? jinja, string? architecture)
    {
        bool internLM = architecture is not null && architecture.StartsWith("InternLM2", StringComparison.Ordinal);
        if (jinja is not null)
        {
            if (jinja.Trim() == PlainChatTemplate.Jinja) return PlainChatTemplate.TemplateName;
            if (jinja.Contains("<|start_header_id|>", StringComparison.Ordinal)) return "llama3";
            if (jinja.Contains("<|im_start|>", StringComparison.Ordinal))
                return internLM || jinja.Contains("bos_token", StringComparison.Ordinal) ? "internlm2" : "chatml";
            if (jinja.Contains("[INST]", StringComparison.Ordinal)) return "llama2";
            if (jinja.Contains("USER:", StringComparison.Ordinal)) return "vicuna";
        }
        if (internLM) return "internlm2";
        if (architecture is not null && architecture.StartsWith("Qwen2", StringComparison.Ordinal)) return "chatml";
        return null;
    }

    /// <summary>The fixed system turn a ChatML template writes when the conversation has none (Qwen's).</summary>
    private static string? ChatMLDefaultSystemPrompt(string jinja)
    {
        var match = DefaultSystemTurn().Match(jinja);
        return match.Success ? match.Groups[1].Value : null;
    }

    // The default turn sits in a Jinja string literal, where the newline is either a real one or an escaped "\n".
    [GeneratedRegex(@"<\|im_start\|>system(?:\n|\\n)([^'""{}<]+)<\|im_end\|>")]
    private static partial Regex DefaultSystemTurn();

    private static string? Architecture(string modelDir)
    {
        var path = Path.Combine(modelDir, "config.json");
        if (!File.Exists(path)) return null;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            return document.RootElement.ValueKind == JsonValueKind.Object
                   && document.RootElement.TryGetProperty("architectures", out var list)
                   && list.ValueKind == JsonValueKind.Array && list.GetArrayLength() > 0
                   && list[0].ValueKind == JsonValueKind.String
                ? list[0].GetString() : null;
        }
        catch (JsonException e)
        {
            throw new FormatException($"{path}: line {e.LineNumber + 1}: is not valid JSON: {e.Message}", e);
        }
    }
}
