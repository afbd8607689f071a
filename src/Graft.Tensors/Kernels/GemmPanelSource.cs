using System.Runtime.CompilerServices;

namespace Graft.Tensors.Kernels;

/// <summary>
/// A stored matrix seen through op(): logical element (r, c) is X[r·ld + c], or X[c·ld + r] when
/// transposed. Elements are float32, or BF16/F16 bits widened on read.
/// </summary>
unsafe readonly struct PanelSource(void* data, int ld, bool transposed, DType type)
{
    public readonly void* Data = data;
    public readonly int Ld = ld;
    public readonly bool Transposed = transposed;
    public readonly DType Type = type;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float At(int r, int c)
    {
        long index = Transposed ? (long)c * Ld + r : (long)r * Ld + c;
        return Type switch
        {
            DType.F32 => ((float*)Data)[index],
            DType.BF16 => HalfConvert.Bf16ToFloat(((ushort*)Data)[index]),
            _ => HalfConvert.F16ToFloat(((ushort*)Data)[index]),
        };
    }

    /// <summary>Address of stored (not logical) element [row, column].</summary>
    public void* Address(long row, long column)
    {
        long index = row * Ld + column;
        return Type == DType.F32 ? (float*)Data + index : (ushort*)Data + index;
    }

    /// <summary>Widens <paramref name="count"/> consecutive stored elements starting at <paramref name="start"/> to float32.</summary>
    public void ReadContiguous(void* start, int count, float* destination)
    {
        var target = new Span<float>(destination, count);
        if (Type == DType.F32) new ReadOnlySpan<float>(start, count).CopyTo(target);
        else HalfConvert.ToFloat(Type, new ReadOnlySpan<ushort>(start, count), target);
    }
}
