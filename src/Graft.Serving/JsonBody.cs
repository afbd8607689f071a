using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Graft.Serving;

/// <summary>
/// A request body checked as text once, where it is read, before any of it is used: it must be UTF-8 (RFC 8259; no
/// invalid or overlong sequence, no encoded surrogate) and JSON whose strings and member names are Unicode text (no
/// escape naming half of a surrogate pair, as \ud800 alone does). Every later read of a string can then trust it.
/// </summary>
internal static class JsonBody
{
    public const int MaxDepth = 64;

    /// <summary>Throws <see cref="ChatRequestException"/> (invalid_json with the byte offset, or invalid_value naming the field) for the first problem.</summary>
    public static void Check(ReadOnlySpan<byte> body)
    {
        if (!System.Text.Unicode.Utf8.IsValid(body))
        {
            int offset = 0;
            while (Rune.DecodeFromUtf8(body[offset..], out _, out int consumed) == OperationStatus.Done) offset += consumed;
            throw ChatRequestException.Invalid($"the request body is not valid UTF-8: the bytes at offset {offset} are not a UTF-8 character (JSON must be UTF-8)", null, "invalid_json");
        }
        var frames = new List<Frame>();
        var reader = new Utf8JsonReader(body, new JsonReaderOptions { MaxDepth = MaxDepth });
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.PropertyName:
                        frames[^1] = frames[^1] with { Name = new Range((int)reader.TokenStartIndex + 1, (int)reader.TokenStartIndex + 1 + reader.ValueSpan.Length) };
                        if (reader.ValueIsEscaped && HasLoneSurrogate(reader.ValueSpan)) throw LoneSurrogate(Path(frames, body));
                        break;
                    case JsonTokenType.StartObject or JsonTokenType.StartArray:
                        CountValue(frames);
                        frames.Add(new Frame(reader.TokenType == JsonTokenType.StartArray, 0, default));
                        break;
                    case JsonTokenType.EndObject or JsonTokenType.EndArray:
                        frames.RemoveAt(frames.Count - 1);
                        break;
                    case JsonTokenType.String:
                        CountValue(frames);
                        if (reader.ValueIsEscaped && HasLoneSurrogate(reader.ValueSpan)) throw LoneSurrogate(Path(frames, body));
                        break;
                    default:
                        CountValue(frames);
                        break;
                }
            }
        }
        catch (JsonException e)
        {
            throw ChatRequestException.Invalid($"the request body is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1}): {e.Message}", null, "invalid_json");
        }
    }

    /// <summary>An open object or array: for an array, how many values it has had; for an object, its current member's raw name.</summary>
    private readonly record struct Frame(bool IsArray, int Count, Range Name);

    private static void CountValue(List<Frame> frames)
    {
        if (frames.Count > 0 && frames[^1].IsArray) frames[^1] = frames[^1] with { Count = frames[^1].Count + 1 };
    }

    /// <summary>Where the reader is, as the error's param names it: messages[0].content[1].text.</summary>
    private static string Path(List<Frame> frames, ReadOnlySpan<byte> body)
    {
        var path = new StringBuilder();
        foreach (var frame in frames)
        {
            if (frame.IsArray) path.Append('[').Append(frame.Count - 1).Append(']');
            else
            {
                if (path.Length > 0) path.Append('.');
                path.Append(ErrorText.Shown(Encoding.UTF8.GetString(body[frame.Name])));
            }
        }
        return path.ToString();
    }

    private static ChatRequestException LoneSurrogate(string param) =>
        ChatRequestException.Invalid($"'{param}' is not valid Unicode text: it holds an unpaired surrogate escape (\\ud800-\\udfff without its other half)", param, "invalid_value");

    /// <summary>Whether raw (escaped) JSON string bytes have a \uD800-\uDBFF escape not followed by a \uDC00-\uDFFF one, or the second alone.</summary>
    internal static bool HasLoneSurrogate(ReadOnlySpan<byte> raw)
    {
        bool pendingHigh = false;
        for (int i = 0; i < raw.Length; i++)
        {
            if (raw[i] != (byte)'\\' || raw[i + 1] != (byte)'u')
            {
                if (pendingHigh) return true;
                if (raw[i] == (byte)'\\') i++;
                continue;
            }
            System.Buffers.Text.Utf8Parser.TryParse(raw.Slice(i + 2, 4), out int unit, out _, 'X');
            i += 5;
            if (unit is >= 0xD800 and <= 0xDBFF)
            {
                if (pendingHigh) return true;
                pendingHigh = true;
            }
            else if (unit is >= 0xDC00 and <= 0xDFFF)
            {
                if (!pendingHigh) return true;
                pendingHigh = false;
            }
            else if (pendingHigh) return true;
        }
        return pendingHigh;
    }
}
