using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace Graft.Tensors.SafeTensors;

/// <summary>
/// Parses and validates a safetensors header. Nothing in it is trusted: every entry is checked field by field
/// with a streaming reader (which, unlike a DOM, sees duplicate keys), then the tensors must tile the data
/// section exactly. All byte offsets reported are from the start of the file.
/// </summary>
internal static class SafeTensorsHeader
{
    /// <summary>The header JSON starts after the 8-byte length prefix.</summary>
    private const long JsonStart = 8;

    public static (List<SafeTensorInfo> Tensors, Dictionary<string, string> Metadata) Parse(string file, ReadOnlySpan<byte> json, long dataLength)
    {
        if (!Utf8.IsValid(json))
            throw new SafeTensorsException(file, "header is not valid UTF-8", byteOffset: JsonStart + FirstInvalidUtf8(json));
        var tensors = new List<SafeTensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var keys = new HashSet<string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 8 });
        try
        {
            Advance(file, ref reader);
            if (reader.TokenType != JsonTokenType.StartObject)
                throw new SafeTensorsException(file, $"header is not a JSON object (starts with {reader.TokenType})", byteOffset: At(ref reader));
            while (Advance(file, ref reader) == JsonTokenType.PropertyName)
            {
                long keyOffset = At(ref reader);
                string key = reader.GetString()!;
                bool isMetadata = key == "__metadata__";
                if (!keys.Add(key))
                    throw new SafeTensorsException(file, $"'{key}' appears twice in the header", isMetadata ? null : key, keyOffset);
                Advance(file, ref reader);
                if (isMetadata) ReadMetadata(file, ref reader, metadata);
                else tensors.Add(ReadEntry(file, key, ref reader, json.Length, dataLength));
            }
            if (reader.Read())
                throw new SafeTensorsException(file, "content after the header object", byteOffset: At(ref reader));
        }
        catch (JsonException e)
        {
            throw new SafeTensorsException(file, $"header is not valid JSON: {e.Message}", null, JsonStart + OffsetOf(json, e), e);
        }
        catch (InvalidOperationException e)
        {
            // GetString on an escape that decodes to invalid UTF-16 (a lone surrogate).
            throw new SafeTensorsException(file, $"header holds an invalid string: {e.Message}", null, At(ref reader), e);
        }
        CheckTiling(file, tensors, JsonStart + json.Length, dataLength);
        return (tensors, metadata);
    }

    private static void ReadMetadata(string file, ref Utf8JsonReader reader, Dictionary<string, string> metadata)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new SafeTensorsException(file, $"__metadata__ is {reader.TokenType}, not an object of strings", byteOffset: At(ref reader));
        while (Advance(file, ref reader) == JsonTokenType.PropertyName)
        {
            long keyOffset = At(ref reader);
            string key = reader.GetString()!;
            Advance(file, ref reader);
            if (reader.TokenType != JsonTokenType.String)
                throw new SafeTensorsException(file, $"__metadata__ value of '{key}' is {reader.TokenType}, not a string", byteOffset: At(ref reader));
            if (!metadata.TryAdd(key, reader.GetString()!))
                throw new SafeTensorsException(file, $"__metadata__ key '{key}' appears twice", byteOffset: keyOffset);
        }
    }

    private static SafeTensorInfo ReadEntry(string file, string name, ref Utf8JsonReader reader, long headerLength, long dataLength)
    {
        long entryOffset = At(ref reader);
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new SafeTensorsException(file, $"entry is {reader.TokenType}, not an object with dtype, shape and data_offsets", name, entryOffset);
        DType? dtype = null;
        long[]? shape = null, offsets = null;
        while (Advance(file, ref reader) == JsonTokenType.PropertyName)
        {
            long fieldOffset = At(ref reader);
            string field = reader.GetString()!;
            if (field is not ("dtype" or "shape" or "data_offsets"))
                throw new SafeTensorsException(file, $"unexpected field '{field}' (only dtype, shape and data_offsets are allowed)", name, fieldOffset);
            if ((field == "dtype" && dtype is not null) || (field == "shape" && shape is not null) || (field == "data_offsets" && offsets is not null))
                throw new SafeTensorsException(file, $"field '{field}' appears twice", name, fieldOffset);
            Advance(file, ref reader);
            long valueOffset = At(ref reader);
            switch (field)
            {
                case "dtype":
                    if (reader.TokenType != JsonTokenType.String)
                        throw new SafeTensorsException(file, $"dtype is {reader.TokenType}, not a string", name, valueOffset);
                    string dtypeName = reader.GetString()!;
                    dtype = DTypes.TryParseSafeTensorsName(dtypeName, out var parsed)
                        ? parsed
                        : throw new SafeTensorsException(file, $"unknown dtype '{dtypeName}' (supported: F32, F16, BF16, I64, I32, I8, U8, BOOL)", name, valueOffset);
                    break;
                case "shape":
                    shape = ReadIntegers(file, name, "shape", ref reader);
                    break;
                default:
                    offsets = ReadIntegers(file, name, "data_offsets", ref reader);
                    if (offsets.Length != 2)
                        throw new SafeTensorsException(file, $"data_offsets has {offsets.Length} values, not 2", name, valueOffset);
                    break;
            }
        }
        if (dtype is null) throw new SafeTensorsException(file, "missing field 'dtype'", name, entryOffset);
        if (shape is null) throw new SafeTensorsException(file, "missing field 'shape'", name, entryOffset);
        if (offsets is null) throw new SafeTensorsException(file, "missing field 'data_offsets'", name, entryOffset);

        var dims = new int[shape.Length];
        long elements = 1;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] > int.MaxValue)
                throw new SafeTensorsException(file, $"shape dimension {i} is {shape[i]}, larger than {int.MaxValue}", name, entryOffset);
            dims[i] = (int)shape[i];
        }
        long byteLength;
        try
        {
            foreach (int d in dims) elements = checked(elements * d);
            byteLength = checked(elements * dtype.Value.SizeOf());
        }
        catch (OverflowException)
        {
            throw new SafeTensorsException(file, $"shape [{string.Join(", ", dims)}] has more elements than a 64-bit byte count can hold", name, entryOffset);
        }
        long begin = offsets[0], end = offsets[1];
        if (begin > end)
            throw new SafeTensorsException(file, $"data_offsets [{begin}, {end}] are not ascending", name, entryOffset);
        if (end > dataLength)
            throw new SafeTensorsException(file, $"data_offsets [{begin}, {end}] end past the data section ({dataLength} bytes)", name, entryOffset);
        if (end - begin != byteLength)
            throw new SafeTensorsException(file,
                $"data_offsets [{begin}, {end}] span {end - begin} bytes, but {dtype.Value.SafeTensorsName()} [{string.Join(", ", dims)}] needs {byteLength}",
                name, JsonStart + headerLength + begin);
        return new SafeTensorInfo(name, dtype.Value, dims, begin, end);
    }

    /// <summary>A JSON array of non-negative integers (shape or data_offsets).</summary>
    private static long[] ReadIntegers(string file, string name, string field, ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
            throw new SafeTensorsException(file, $"{field} is {reader.TokenType}, not an array of integers", name, At(ref reader));
        var values = new List<long>();
        while (Advance(file, ref reader) != JsonTokenType.EndArray)
        {
            if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt64(out long value))
                throw new SafeTensorsException(file, $"{field} holds {Describe(ref reader)}, not an integer", name, At(ref reader));
            if (value < 0)
                throw new SafeTensorsException(file, $"{field} holds the negative value {value}", name, At(ref reader));
            values.Add(value);
        }
        return values.ToArray();
    }

    /// <summary>Sorted by begin, the tensors must follow each other without gap or overlap from 0 to the data length.</summary>
    private static void CheckTiling(string file, List<SafeTensorInfo> tensors, long dataStart, long dataLength)
    {
        var sorted = tensors.ToArray();
        Array.Sort(sorted, (a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long covered = 0;
        SafeTensorInfo? previous = null;
        foreach (var t in sorted)
        {
            if (t.Begin < covered)
                throw new SafeTensorsException(file,
                    $"data [{t.Begin}, {t.End}) overlaps tensor '{previous!.Name}' at [{previous.Begin}, {previous.End})", t.Name, dataStart + t.Begin);
            if (t.Begin > covered)
                throw new SafeTensorsException(file,
                    $"{t.Begin - covered} bytes of the data section before it (from {covered}) belong to no tensor", t.Name, dataStart + covered);
            covered = t.End;
            previous = t;
        }
        if (covered != dataLength)
            throw new SafeTensorsException(file, $"the last {dataLength - covered} bytes of the data section belong to no tensor", null, dataStart + covered);
    }

    private static JsonTokenType Advance(string file, ref Utf8JsonReader reader) =>
        reader.Read() ? reader.TokenType : throw new SafeTensorsException(file, "header ends early", byteOffset: JsonStart + reader.BytesConsumed);

    private static long At(ref Utf8JsonReader reader) => JsonStart + reader.TokenStartIndex;

    private static string Describe(ref Utf8JsonReader reader) =>
        reader.TokenType == JsonTokenType.Number ? Encoding.UTF8.GetString(reader.ValueSpan) : reader.TokenType.ToString();

    /// <summary>Offset within the JSON of a reader error, from its line and position (lines end at '\n').</summary>
    private static long OffsetOf(ReadOnlySpan<byte> json, JsonException e)
    {
        long line = e.LineNumber ?? 0, offset = 0;
        for (; line > 0 && offset < json.Length; offset++)
            if (json[(int)offset] == (byte)'\n') line--;
        return Math.Min(offset + (e.BytePositionInLine ?? 0), json.Length);
    }

    private static int FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        int offset = 0;
        while (offset < bytes.Length)
        {
            if (Rune.DecodeFromUtf8(bytes[offset..], out _, out int consumed) != System.Buffers.OperationStatus.Done) return offset;
            offset += consumed;
        }
        return offset;
    }
}
