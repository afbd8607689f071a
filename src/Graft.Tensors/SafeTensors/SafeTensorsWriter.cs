using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Graft.Tensors.SafeTensors;

/// <summary>
/// Writes safetensors files atomically: to a temporary file beside the target, flushed to disk, then renamed
/// into place, so the target is never half-written; the temporary file is removed on failure.
/// </summary>
/// <remarks>
/// The header holds __metadata__ (when given) first, then the tensors in the given order (data laid out in
/// the same order), padded with spaces to a multiple of 8 bytes so the data section starts aligned.
/// Names are written as UTF-8; they must be non-empty, valid UTF-16 and not "__metadata__".
/// </remarks>
public static class SafeTensorsWriter
{
    private static readonly JsonWriterOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        foreach (var (name, tensor) in list) ArgumentNullException.ThrowIfNull(tensor, $"tensor '{name}'");
        var header = Header(list.Select(t => (t.Key, t.Value.DType, t.Value.Shape)).ToList(), metadata);
        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BitConverter.TryWriteBytes(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            foreach (var (_, tensor) in list)
            {
                if (tensor.DType == DType.F32) WriteChunked(stream, tensor.Span);
                else WriteChunked(stream, tensor.HalfBits);
            }
        }, bufferSize: 1 << 16);
    }

    /// <summary>
    /// Writes tensors one at a time: the header from <paramref name="entries"/> (name, type and shape of each, in order),
    /// then each tensor as <paramref name="produce"/> makes it, so only one tensor need be in memory at once. Each
    /// produced tensor must have the type and shape its entry announced. <paramref name="written"/> is told after each.
    /// </summary>
    public static void WriteStreamed(string path, IReadOnlyList<(string Name, DType DType, int[] Shape)> entries, Func<int, Tensor> produce,
        IReadOnlyDictionary<string, string>? metadata = null, Action<int>? written = null)
    {
        ArgumentNullException.ThrowIfNull(entries);
        ArgumentNullException.ThrowIfNull(produce);
        var header = Header(entries, metadata);
        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BitConverter.TryWriteBytes(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            for (int i = 0; i < entries.Count; i++)
            {
                var tensor = produce(i);
                var (name, dtype, shape) = entries[i];
                if (tensor.DType != dtype || !tensor.Shape.AsSpan().SequenceEqual(shape))
                    throw new InvalidOperationException($"tensor '{name}' was announced as {dtype} [{string.Join(", ", shape)}] but produced as {tensor.DType} {tensor.ShapeString}");
                if (tensor.DType == DType.F32) WriteChunked(stream, tensor.Span);
                else WriteChunked(stream, tensor.HalfBits);
                written?.Invoke(i);
            }
        }, bufferSize: 1 << 16);
    }

    /// <summary>The padded header JSON, validating names on the way.</summary>
    private static byte[] Header(IReadOnlyList<(string Name, DType DType, int[] Shape)> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, JsonOptions))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata)
                {
                    CheckText(key, "metadata key");
                    ArgumentNullException.ThrowIfNull(value, $"metadata '{key}'");
                    CheckText(value, $"metadata value of '{key}'", allowEmpty: true);
                    json.WriteString(key, value);
                }
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, dtype, shape) in tensors)
            {
                CheckText(name, "tensor name");
                if (name == "__metadata__") throw new ArgumentException("'__metadata__' is reserved and cannot name a tensor", nameof(tensors));
                if (!names.Add(name)) throw new ArgumentException($"tensor name '{name}' appears twice", nameof(tensors));
                long byteLength = Tensor.ShapeLength(shape) * dtype.SizeOf();
                json.WriteStartObject(name);
                json.WriteString("dtype", dtype.SafeTensorsName());
                json.WriteStartArray("shape");
                foreach (int d in shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + byteLength);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += byteLength;
            }
            json.WriteEndObject();
        }
        int padded = checked((int)(buffer.Length + 7) / 8 * 8);
        while (buffer.Length < padded) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    /// <summary>Text that would not survive UTF-8 (a lone surrogate) is refused rather than silently replaced.</summary>
    private static void CheckText(string? text, string what, bool allowEmpty = false)
    {
        if (text is null || (!allowEmpty && text.Length == 0)) throw new ArgumentException($"{what} is empty");
        if (text.AsSpan().ContainsAnyInRange('\uD800', '\uDFFF') && !IsValidUtf16(text))
            throw new ArgumentException($"{what} '{text}' holds a lone surrogate and cannot be encoded as UTF-8");
    }

    private static bool IsValidUtf16(string text)
    {
        try
        {
            new UTF8Encoding(false, throwOnInvalidBytes: true).GetByteCount(text);
            return true;
        }
        catch (EncoderFallbackException)
        {
            return false;
        }
    }

    /// <summary>Writes in slices so a tensor over 2 GB never needs one byte span.</summary>
    private static void WriteChunked<T>(Stream stream, ReadOnlySpan<T> values) where T : unmanaged
    {
        int chunk = (1 << 24) / Marshal.SizeOf<T>();
        for (int i = 0; i < values.Length; i += chunk)
            stream.Write(MemoryMarshal.AsBytes(values.Slice(i, Math.Min(chunk, values.Length - i))));
    }
}
