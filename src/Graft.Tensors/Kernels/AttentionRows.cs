using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Graft.Tensors.Kernels;

/// <summary>
/// One query row of attention against a head's keys and values (the decode case, Tq small): a dot product
/// and a scaled add per key over rows of only D (64-128) floats, where a general span routine's per-call
/// set-up costs as much as the arithmetic. Here the query stays in registers across keys and the output in
/// registers across values.
/// </summary>
internal static class AttentionRows
{
    /// <summary>scores[j] = q[0:D] · keys[j·keyStride : +D] for j &lt; scores.Length.</summary>
    public static void Scores(ReadOnlySpan<float> q, int d, ReadOnlySpan<float> keys, int keyStride, Span<float> scores)
    {
        int count = scores.Length;
        if (count == 0) return;
        if ((long)(count - 1) * keyStride + d > keys.Length || q.Length < d)
            throw new ArgumentException($"attention rows: {count} keys of {d} at stride {keyStride} exceed the {keys.Length} key elements");
        ref float qStart = ref MemoryMarshal.GetReference(q);
        ref float keyStart = ref MemoryMarshal.GetReference(keys);
        for (int j = 0; j < count; j++)
            scores[j] = Dot(ref qStart, ref Unsafe.Add(ref keyStart, (nint)j * keyStride), d);
    }

    /// <summary>output[0:D] += Σ_j p[j] · values[j·valueStride : +D], skipping keys of zero probability.</summary>
    public static void WeightedSum(ReadOnlySpan<float> p, ReadOnlySpan<float> values, int valueStride, int d, Span<float> output)
    {
        int count = p.Length;
        if (count == 0) return;
        if ((long)(count - 1) * valueStride + d > values.Length || output.Length < d)
            throw new ArgumentException($"attention rows: {count} values of {d} at stride {valueStride} exceed the {values.Length} value elements");
        ref float valueStart = ref MemoryMarshal.GetReference(values);
        ref float outStart = ref MemoryMarshal.GetReference(output);
        int t = 0;
        // 32 output features at a time in four registers, across every key.
        for (; t + 32 <= d; t += 32)
        {
            ref float o = ref Unsafe.Add(ref outStart, t);
            var a0 = Vector256.LoadUnsafe(ref o);
            var a1 = Vector256.LoadUnsafe(ref o, 8);
            var a2 = Vector256.LoadUnsafe(ref o, 16);
            var a3 = Vector256.LoadUnsafe(ref o, 24);
            for (int j = 0; j < count; j++)
            {
                float weight = p[j];
                if (weight == 0f) continue;
                var w = Vector256.Create(weight);
                ref float v = ref Unsafe.Add(ref valueStart, (nint)j * valueStride + t);
                a0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref v), w, a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref v, 8), w, a1);
                a2 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref v, 16), w, a2);
                a3 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref v, 24), w, a3);
            }
            a0.StoreUnsafe(ref o);
            a1.StoreUnsafe(ref o, 8);
            a2.StoreUnsafe(ref o, 16);
            a3.StoreUnsafe(ref o, 24);
        }
        for (; t < d; t++)
        {
            float sum = output[t];
            for (int j = 0; j < count; j++)
                if (p[j] != 0f) sum += p[j] * Unsafe.Add(ref valueStart, (nint)j * valueStride + t);
            output[t] = sum;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Dot(ref float a, ref float b, int d)
    {
        Vector256<float> s0 = default, s1 = default;
        int t = 0;
        for (; t + 16 <= d; t += 16)
        {
            s0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref a, (nuint)t), Vector256.LoadUnsafe(ref b, (nuint)t), s0);
            s1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref a, (nuint)t + 8), Vector256.LoadUnsafe(ref b, (nuint)t + 8), s1);
        }
        for (; t + 8 <= d; t += 8)
            s0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref a, (nuint)t), Vector256.LoadUnsafe(ref b, (nuint)t), s0);
        float sum = Vector256.Sum(s0 + s1);
        for (; t < d; t++) sum += Unsafe.Add(ref a, t) * Unsafe.Add(ref b, t);
        return sum;
    }
}
