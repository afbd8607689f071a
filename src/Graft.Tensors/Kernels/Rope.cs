using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Graft.Tensors.Kernels;

/// <summary>Rotation of head features in split halves: x, y [N, H, D]; cos, sin [P, R/2] with token n using table row n mod P.</summary>
public static class Rope
{
    /// <summary>
    /// y1 = x1·cos − x2·sin, y2 = x2·cos + x1·sin on features [0, R/2) and [R/2, R) of every head, features
    /// [R, D) copied. With inverse set, rotates by the negative angle (the backward).
    /// </summary>
    public static void Rotate(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin,
        int heads, int headDim, int half, bool inverse)
    {
        int tableRows = cos.Length / half;
        int tokens = x.Length / (heads * headDim);
        float sign = inverse ? -1f : 1f;
        for (int n = 0; n < tokens; n++)
        {
            var c = cos.Slice(n % tableRows * half, half);
            var s = sin.Slice(n % tableRows * half, half);
            for (int h = 0; h < heads; h++)
            {
                int offset = (n * heads + h) * headDim;
                RotateHead(x.Slice(offset, headDim), y.Slice(offset, headDim), c, s, half, sign);
            }
        }
    }

    private static void RotateHead(ReadOnlySpan<float> x, Span<float> y, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, int half, float sign)
    {
        ref float x1 = ref MemoryMarshal.GetReference(x);
        ref float x2 = ref Unsafe.Add(ref x1, half);
        ref float y1 = ref MemoryMarshal.GetReference(y);
        ref float y2 = ref Unsafe.Add(ref y1, half);
        ref float cr = ref MemoryMarshal.GetReference(cos);
        ref float sr = ref MemoryMarshal.GetReference(sin);
        int i = 0;
        var signV = Vector256.Create(sign);
        for (; i <= half - 8; i += 8)
        {
            var a = Vector256.LoadUnsafe(ref x1, (nuint)i);
            var b = Vector256.LoadUnsafe(ref x2, (nuint)i);
            var c = Vector256.LoadUnsafe(ref cr, (nuint)i);
            var s = Vector256.LoadUnsafe(ref sr, (nuint)i) * signV;
            (a * c - b * s).StoreUnsafe(ref y1, (nuint)i);
            (b * c + a * s).StoreUnsafe(ref y2, (nuint)i);
        }
        for (; i < half; i++)
        {
            float a = x[i], b = x[i + half], c = cos[i], s = sin[i] * sign;
            y[i] = a * c - b * s;
            y[i + half] = b * c + a * s;
        }
        x[(2 * half)..].CopyTo(y[(2 * half)..]);
    }
}
