namespace Graft.Tensors.SafeTensors;

/// <summary>Named tensors readable from a single safetensors file or a sharded checkpoint.</summary>
public interface ISafeTensorsReader : IDisposable
{
    /// <summary>The file (or index file) the tensors come from, for messages.</summary>
    string Path { get; }

    IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>The file's __metadata__, or the index's metadata (non-string values as their JSON text).</summary>
    IReadOnlyDictionary<string, string> Metadata { get; }

    bool Contains(string name);

    SafeTensorInfo Info(string name);

    /// <summary>The raw little-endian bytes of a tensor, valid while the reader is open.</summary>
    ReadOnlySpan<byte> RawBytes(string name);

    /// <summary>A float tensor in its stored type (F32, F16 or BF16); see <see cref="SafeTensorsFile.Load"/> for its lifetime.</summary>
    Tensor Load(string name);

    /// <summary>A float tensor widened to a new float32 array.</summary>
    float[] ReadFloats(string name);

    /// <summary>An integer or boolean tensor as a new array of 64-bit integers.</summary>
    long[] ReadIntegers(string name);
}
