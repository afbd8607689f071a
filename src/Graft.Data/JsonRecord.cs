using System.Text.Json;

namespace Graft.Data;

/// <summary>One JSON object being read as a record: every failure becomes a <see cref="DataFormatException"/> at its place.</summary>
public readonly struct JsonRecord(string file, string location, JsonElement element)
{
    public string File { get; } = file;
    public string Location { get; } = location;
    public JsonElement Element { get; } = element;

    public DataFormatException Error(string problem) => new(File, Location, problem);

    public static JsonRecord Object(string file, string location, JsonElement element) =>
        element.ValueKind == JsonValueKind.Object
            ? new JsonRecord(file, location, element)
            : throw new DataFormatException(file, location, $"expected a JSON object, found {element.ValueKind}");

    public JsonElement? Optional(string name) =>
        Element.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    public JsonElement Required(string name) => Optional(name) ?? throw Error($"field \"{name}\" is missing");

    public string String(string name) => AsString(Required(name), name);

    public string? OptionalString(string name) => Optional(name) is { } value ? AsString(value, name) : null;

    public string AsString(JsonElement value, string field) =>
        value.ValueKind == JsonValueKind.String ? value.GetString()! : throw Error($"field \"{field}\" should be a string, found {value.ValueKind}");

    public int Int(string name)
    {
        var value = Required(name);
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int result)
            ? result : throw Error($"field \"{name}\" should be an integer, found {value}");
    }

    public List<string> StringArray(string name)
    {
        var value = Required(name);
        if (value.ValueKind != JsonValueKind.Array) throw Error($"field \"{name}\" should be an array, found {value.ValueKind}");
        var items = new List<string>();
        int i = 0;
        foreach (var item in value.EnumerateArray())
            items.Add(AsString(item, $"{name}[{i++}]"));
        return items;
    }

    /// <summary>A string or a number read as its text (LLaVA ids are either).</summary>
    public string? OptionalId(string name) => Optional(name) switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } v => v.GetString(),
        { ValueKind: JsonValueKind.Number } v => v.GetRawText(),
        var v => throw Error($"field \"{name}\" should be a string or a number, found {v.Value.ValueKind}"),
    };
}

/// <summary>Parses whole JSON files and JSONL lines, naming the line of a syntax error.</summary>
public static class JsonFiles
{
    private static readonly JsonDocumentOptions Options = new() { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow };

    public static JsonDocument Parse(string file, string text, long lineOffset = 0)
    {
        try
        {
            return JsonDocument.Parse(text, Options);
        }
        catch (JsonException e)
        {
            long line = lineOffset + (e.LineNumber ?? 0) + 1;
            throw new DataFormatException(file, DataFormatException.Line(line), $"invalid JSON: {FirstSentence(e.Message)}", e);
        }
    }

    public static JsonDocument ParseFile(string path) => Parse(path, ReadText(path));

    /// <summary>Each non-blank line of a JSONL file with its 1-based line number.</summary>
    public static IEnumerable<(long Line, JsonElement Element)> ReadLines(string path)
    {
        long number = 0;
        foreach (var line in System.IO.File.ReadLines(Require(path)))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            using var document = Parse(path, line, number - 1);
            yield return (number, document.RootElement.Clone());
        }
    }

    public static string ReadText(string path) => System.IO.File.ReadAllText(Require(path));

    public static string Require(string path) =>
        System.IO.File.Exists(path) ? path : throw new FileNotFoundException($"data file not found: {path}", path);

    /// <summary>System.Text.Json appends its own "LineNumber: .. | BytePositionInLine: .." text; we say the line ourselves.</summary>
    private static string FirstSentence(string message)
    {
        int cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        return cut > 0 ? message[..cut].TrimEnd() : message;
    }
}
