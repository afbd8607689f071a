using System.Text.Json;

namespace Graft.Models.Tokenization;

/// <summary>A JSON element that remembers its file and path, so every error can say exactly where it is.</summary>
internal readonly struct JsonNode(string file, string path, JsonElement element)
{
    public string File { get; } = file;
    public string Path { get; } = path;
    public JsonElement Element { get; } = element;

    public bool IsNull => Element.ValueKind == JsonValueKind.Null;

    public TokenizerFormatException Malformed(string problem) => new(File, Path, problem);
    public UnsupportedTokenizerException Unsupported(string problem) => new(File, Path, problem);

    public JsonNode? Optional(string name)
    {
        if (Element.ValueKind != JsonValueKind.Object) throw Malformed($"expected an object, found {Element.ValueKind}");
        return Element.TryGetProperty(name, out var child) && child.ValueKind != JsonValueKind.Null
            ? new JsonNode(File, Child(name), child) : null;
    }

    public JsonNode Required(string name) => Optional(name) ?? throw new TokenizerFormatException(File, Child(name), "is missing");

    public string Child(string name) => Path.Length == 0 ? name : Path + "." + name;

    public string AsString() =>
        Element.ValueKind == JsonValueKind.String ? Element.GetString()! : throw Malformed($"expected a string, found {Element.ValueKind}");

    public int AsInt() =>
        Element.ValueKind == JsonValueKind.Number && Element.TryGetInt32(out var v) ? v : throw Malformed($"expected an integer, found {Element}");

    public bool AsBool() =>
        Element.ValueKind is JsonValueKind.True or JsonValueKind.False ? Element.GetBoolean() : throw Malformed($"expected true or false, found {Element}");

    public string String(string name) => Required(name).AsString();
    public string? OptionalString(string name) => Optional(name)?.AsString();
    public bool Bool(string name, bool fallback) => Optional(name)?.AsBool() ?? fallback;
    public int Int(string name) => Required(name).AsInt();
    public string Type => String("type");

    public IEnumerable<JsonNode> Items()
    {
        if (Element.ValueKind != JsonValueKind.Array) throw Malformed($"expected an array, found {Element.ValueKind}");
        int i = 0;
        foreach (var item in Element.EnumerateArray())
            yield return new JsonNode(File, $"{Path}[{i++}]", item);
    }

    public IEnumerable<(string Name, JsonNode Value)> Properties()
    {
        if (Element.ValueKind != JsonValueKind.Object) throw Malformed($"expected an object, found {Element.ValueKind}");
        foreach (var p in Element.EnumerateObject())
            yield return (p.Name, new JsonNode(File, Child(p.Name), p.Value));
    }

    /// <summary>A `pattern` field: {"String": literal} or {"Regex": pattern}, as a .NET regex source.</summary>
    public UnicodeRegex Pattern(string name)
    {
        var node = Required(name);
        if (node.Optional("Regex") is { } re) return new UnicodeRegex(re.AsString(), File, node.Path);
        if (node.Optional("String") is { } literal) return new UnicodeRegex(System.Text.RegularExpressions.Regex.Escape(literal.AsString()), File, node.Path);
        throw node.Malformed("expected {\"String\": ...} or {\"Regex\": ...}");
    }
}
