namespace Graft.Models.Tokenization;

/// <summary>tokenizer.json `normalizer`: rewrites each piece of text between added tokens before pre-tokenization.</summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);

    public static Normalizer? Parse(JsonNode? node)
    {
        if (node is not { } n) return null;
        return n.Type switch
        {
            "Sequence" => new SequenceNormalizer(n.Required("normalizers").Items().Select(i => Parse(i)!).ToArray()),
            "NFC" => new FunctionNormalizer(UnicodeNormalization.Nfc),
            "NFD" => new FunctionNormalizer(UnicodeNormalization.Nfd),
            "Prepend" => new PrependNormalizer(n.String("prepend")),
            "Replace" => new ReplaceNormalizer(n),
            "Lowercase" => new LowercaseNormalizer(),
            var other => throw new UnsupportedTokenizerException(n.File, n.Child("type"), $"normalizer '{other}' is not supported"),
        };
    }
}

internal sealed class SequenceNormalizer(Normalizer[] inner) : Normalizer
{
    public override string Normalize(string text)
    {
        foreach (var n in inner) text = n.Normalize(text);
        return text;
    }
}

internal sealed class FunctionNormalizer(Func<string, string> normalize) : Normalizer
{
    public override string Normalize(string text) => normalize(text);
}

internal sealed class PrependNormalizer(string prefix) : Normalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
}

internal sealed class LowercaseNormalizer : Normalizer
{
    public override string Normalize(string text) => text.ToLowerInvariant();
}

/// <summary>Replace: `pattern` {"String"} is literal, {"Regex"} a regex; also used as a decoder (per token).</summary>
internal sealed class ReplaceNormalizer : Normalizer
{
    private readonly string? _literal;
    private readonly UnicodeRegex? _regex;
    private readonly string _content;

    public ReplaceNormalizer(JsonNode n)
    {
        var pattern = n.Required("pattern");
        _literal = pattern.Optional("String")?.AsString();
        if (_literal is null) _regex = n.Pattern("pattern");
        else if (_literal.Length == 0) throw pattern.Malformed("an empty replace pattern");
        _content = n.String("content");
    }

    public override string Normalize(string text) =>
        _literal is not null ? text.Replace(_literal, _content, StringComparison.Ordinal) : _regex!.Replace(text, _content);
}
