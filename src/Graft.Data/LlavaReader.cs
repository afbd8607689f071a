using System.Text.Json;

namespace Graft.Data;

/// <summary>
/// Reads LLaVA conversation data: a JSON array or JSONL of
/// <c>{"id", "image"?, "conversations": [{"from", "value"}]}</c>. "image" may be one file name or a list.
/// Roles: "human"/"user" are the user, "gpt"/"assistant" the assistant, "system" the system.
/// <para>
/// Placeholders: each image needs exactly one <c>&lt;image&gt;</c> in a user turn. A record with images
/// and no placeholder at all gets "&lt;image&gt;\n" prepended to its first user turn, once per image,
/// as LLaVA's own evaluation scripts do with bare questions; any other mismatch is an error.
/// Image paths are resolved against <c>imageFolder</c> (or kept when absolute); their existence is
/// checked by whoever opens them, so a large set is read without touching every image file.
/// </para>
/// </summary>
public static class LlavaReader
{
    /// <summary>Reads <paramref name="path"/> as JSONL when it ends in ".jsonl", else as a JSON array.</summary>
    public static List<Conversation> Read(string path, string imageFolder) =>
        path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) ? ReadJsonl(path, imageFolder) : ReadJson(path, imageFolder);

    /// <summary>Where the images of a LLaVA file live: an images/ folder beside it (as the shapes world writes them), else beside it.</summary>
    public static string DefaultImageFolder(string file)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(file))!;
        string images = Path.Combine(folder, "images");
        return Directory.Exists(images) ? images : folder;
    }

    public static List<Conversation> ReadJson(string path, string imageFolder)
    {
        using var document = JsonFiles.ParseFile(path);
        if (document.RootElement.ValueKind != JsonValueKind.Array)
            throw new DataFormatException(path, "top level", $"expected a JSON array of records, found {document.RootElement.ValueKind}");
        var records = new List<Conversation>();
        int index = 0;
        foreach (var element in document.RootElement.EnumerateArray())
        {
            string? id = element.ValueKind == JsonValueKind.Object ? PeekId(element) : null;
            records.Add(Parse(JsonRecord.Object(path, DataFormatException.Record(index, id), element), index, imageFolder));
            index++;
        }
        return records;
    }

    public static List<Conversation> ReadJsonl(string path, string imageFolder)
    {
        var records = new List<Conversation>();
        foreach (var (line, element) in JsonFiles.ReadLines(path))
            records.Add(Parse(JsonRecord.Object(path, DataFormatException.Line(line), element), records.Count, imageFolder));
        return records;
    }

    private static string? PeekId(JsonElement element) =>
        element.TryGetProperty("id", out var id) && id.ValueKind is JsonValueKind.String or JsonValueKind.Number
            ? (id.ValueKind == JsonValueKind.String ? id.GetString() : id.GetRawText()) : null;

    private static Conversation Parse(JsonRecord record, int index, string imageFolder)
    {
        string id = record.OptionalId("id") ?? index.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var images = ReadImages(record);

        var conversations = record.Required("conversations");
        if (conversations.ValueKind != JsonValueKind.Array || conversations.GetArrayLength() == 0)
            throw record.Error("\"conversations\" should be a non-empty array of turns");

        var roles = new List<Role>();
        var texts = new List<string>();
        int t = 0;
        foreach (var turnElement in conversations.EnumerateArray())
        {
            if (turnElement.ValueKind != JsonValueKind.Object)
                throw record.Error($"conversations[{t}] should be an object, found {turnElement.ValueKind}");
            var turn = new JsonRecord(record.File, record.Location, turnElement);
            string from = turn.Optional("from") is { } f ? turn.AsString(f, $"conversations[{t}].from")
                : throw record.Error($"conversations[{t}].from is missing");
            string value = turn.Optional("value") is { } v ? turn.AsString(v, $"conversations[{t}].value")
                : throw record.Error($"conversations[{t}].value is missing");
            roles.Add(from switch
            {
                "human" or "user" => Role.User,
                "gpt" or "assistant" => Role.Assistant,
                "system" => Role.System,
                _ => throw record.Error($"conversations[{t}].from is \"{from}\"; expected human, gpt, user, assistant or system"),
            });
            texts.Add(value);
            t++;
        }
        if (!roles.Contains(Role.Assistant)) throw record.Error("no assistant turn, so nothing to learn or score");

        int placeholders = 0;
        for (int i = 0; i < texts.Count; i++)
        {
            int count = Conversation.CountPlaceholders(texts[i]);
            if (count > 0 && roles[i] != Role.User)
                throw record.Error($"conversations[{i}] ({roles[i]}) holds an {Conversation.ImagePlaceholder} placeholder; only user turns may");
            placeholders += count;
        }
        if (placeholders == 0 && images.Count > 0)
        {
            int first = roles.IndexOf(Role.User);
            if (first < 0) throw record.Error("has an image but no user turn to attach it to");
            texts[first] = string.Concat(Enumerable.Repeat(Conversation.ImagePlaceholder + "\n", images.Count)) + texts[first];
            placeholders = images.Count;
        }
        if (placeholders != images.Count)
            throw record.Error($"{placeholders} {Conversation.ImagePlaceholder} placeholder(s) for {images.Count} image(s)");

        var turns = new List<Turn>(texts.Count);
        int nextImage = 0;
        for (int i = 0; i < texts.Count; i++)
        {
            int count = Conversation.CountPlaceholders(texts[i]);
            turns.Add(new Turn(roles[i], texts[i], Enumerable.Range(nextImage, count).ToArray()));
            nextImage += count;
        }
        var paths = images.Select(name => Path.IsPathRooted(name) ? name : Path.Combine(imageFolder, name)).ToArray();
        return new Conversation(id, paths, turns);
    }

    private static List<string> ReadImages(JsonRecord record)
    {
        if (record.Optional("image") is not { } image) return [];
        if (image.ValueKind == JsonValueKind.String)
        {
            string name = image.GetString()!;
            return name.Length == 0 ? throw record.Error("\"image\" is an empty string") : [name];
        }
        if (image.ValueKind != JsonValueKind.Array) throw record.Error($"\"image\" should be a file name or a list of them, found {image.ValueKind}");
        var names = record.StringArray("image");
        return names.Any(n => n.Length == 0) ? throw record.Error("\"image\" lists an empty file name") : names;
    }
}

/// <summary>Writes LLaVA conversation files that <see cref="LlavaReader"/> reads.</summary>
public static class LlavaWriter
{
    /// <summary>One single-turn conversation per item, with no image: [{"id", "conversations": [human, gpt]}].</summary>
    public static void WriteQuestionAnswers(DataOutput output, string relativePath, IEnumerable<(string Id, string Question, string Answer)> items)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(items);
        output.WriteJson(relativePath, w =>
        {
            w.WriteStartArray();
            foreach (var (id, question, answer) in items)
            {
                w.WriteStartObject();
                w.WriteString("id", id);
                w.WriteStartArray("conversations");
                foreach (var (from, value) in new[] { ("human", question), ("gpt", answer) })
                {
                    w.WriteStartObject();
                    w.WriteString("from", from);
                    w.WriteString("value", value);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
    }
}
