using System.Runtime.InteropServices;
using System.Text.Json;

namespace Graft.Tensors.SafeTensors;

/// <summary>A safetensors file opened for reading (https://github.com/huggingface/safetensors).</summary>
public sealed class SafeTensorsFile : IDisposable
{
    private readonly byte[] _bytes;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafeTensorInfo> _byName;

    private SafeTensorsFile(string path, byte[] bytes, long dataStart, List<SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _bytes = bytes;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
        _byName = tensors.ToDictionary(t => t.Name);
    }

    public string Path { get; }
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static SafeTensorsFile Open(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 8) throw new SafeTensorsException(path, "file is shorter than the 8-byte header length", byteOffset: 0);
        long headerLength = BitConverter.ToInt64(bytes, 0);
        if (headerLength < 2 || headerLength > bytes.Length - 8) throw new SafeTensorsException(path, $"header length {headerLength} does not fit the file", byteOffset: 0);
        var tensors = new List<SafeTensorInfo>();
        var metadata = new Dictionary<string, string>();
        using var doc = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        foreach (var entry in doc.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__")
            {
                foreach (var m in entry.Value.EnumerateObject()) metadata[m.Name] = m.Value.GetString()!;
                continue;
            }
            if (!DTypes.TryParseSafeTensorsName(entry.Value.GetProperty("dtype").GetString()!, out var dtype))
                throw new SafeTensorsException(path, "unknown dtype", entry.Name);
            var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray();
            var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(d => d.GetInt64()).ToArray();
            tensors.Add(new SafeTensorInfo(entry.Name, dtype, shape, offsets[0], offsets[1]));
        }
        return new SafeTensorsFile(path, bytes, 8 + headerLength, tensors, metadata);
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public SafeTensorInfo Info(string name) =>
        _byName.TryGetValue(name, out var info) ? info : throw new SafeTensorsException(Path, "no such tensor", name);

    /// <summary>The raw little-endian bytes of a tensor.</summary>
    public ReadOnlySpan<byte> RawBytes(string name)
    {
        var info = Info(name);
        return _bytes.AsSpan((int)(_dataStart + info.Begin), (int)info.ByteLength);
    }

    /// <summary>A float tensor in its stored type (F32, F16 or BF16). Valid while this file is open.</summary>
    public Tensor Load(string name)
    {
        var info = Info(name);
        var raw = RawBytes(name);
        Tensor t = info.DType switch
        {
            DType.F32 => Tensor.FromArray(MemoryMarshal.Cast<byte, float>(raw).ToArray(), info.Shape),
            DType.F16 or DType.BF16 => Tensor.FromHalfBits(MemoryMarshal.Cast<byte, ushort>(raw).ToArray(), info.DType, info.Shape),
            _ => throw new SafeTensorsException(Path, $"{info.DType} is not a float type", name),
        };
        t.Name = name;
        return t;
    }

    /// <summary>Any float tensor widened to a new float32 array.</summary>
    public float[] ReadFloats(string name) => Load(name).ToArray();

    /// <summary>An integer or boolean tensor as 64-bit integers.</summary>
    public long[] ReadIntegers(string name)
    {
        var info = Info(name);
        var raw = RawBytes(name);
        return info.DType switch
        {
            DType.I64 => MemoryMarshal.Cast<byte, long>(raw).ToArray(),
            DType.I32 => Array.ConvertAll(MemoryMarshal.Cast<byte, int>(raw).ToArray(), v => (long)v),
            DType.I8 => Array.ConvertAll(MemoryMarshal.Cast<byte, sbyte>(raw).ToArray(), v => (long)v),
            DType.U8 or DType.Bool => Array.ConvertAll(raw.ToArray(), v => (long)v),
            _ => throw new SafeTensorsException(Path, $"{info.DType} is not an integer type", name),
        };
    }

    public void Dispose() { }
}
