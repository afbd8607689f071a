using Graft.Tensors;
using Graft.Tensors.Kernels;

namespace Graft.Tests.Perf;

/// <summary>The decode-path kernels against plain double-precision loops, on shapes that reach their edge cases.</summary>
public class DecodeKernelTests
{
    [Theory]
    [InlineData(1031, 200, 0, 0.5f)] // two threads; k % 32 = 8 left over for the scalar tail; n % 8 = 7 rows past the 8-row groups
    [InlineData(1031, 200, 0, 0f)]   // the same with beta 0, where 8-row groups store their sums directly
    [InlineData(4099, 32, 0, 0.5f)]  // exactly one paired block per row
    [InlineData(700, 131, 5, 0f)]    // rows wider than k (leading dimension 136)
    public void Bf16MatVecMatchesReference(int n, int k, int pad, float beta)
    {
        int ldb = k + pad;
        var x = Random(k, 1);
        var bits = new ushort[n * ldb];
        HalfConvert.FloatToBf16(Random(bits.Length, 2), bits);
        var y = Random(n, 3);
        var expected = new double[n];
        for (int j = 0; j < n; j++)
        {
            double sum = beta * y[j];
            for (int p = 0; p < k; p++) sum += (double)x[p] * HalfConvert.Bf16ToFloat(bits[j * ldb + p]);
            expected[j] = sum;
        }
        Gemm.MultiplyHalf(DType.BF16, true, 1, n, k, x, k, bits, ldb, y, n, beta);
        for (int j = 0; j < n; j++) Assert.True(Math.Abs(expected[j] - y[j]) < 1e-4 * (1 + Math.Abs(expected[j])), $"row {j}: {y[j]} vs {expected[j]}");
    }

    [Theory]
    [InlineData(64, 128, 37)]
    [InlineData(40, 40, 9)]   // 32 features in registers, 8 in the scalar tail
    [InlineData(7, 21, 3)]    // no whole block at all
    public void AttentionRowsMatchReference(int d, int stride, int keys)
    {
        var q = Random(d, 4);
        var kv = Random((keys - 1) * stride + d, 5);
        var scores = new float[keys];
        AttentionRows.Scores(q, d, kv, stride, scores);
        for (int j = 0; j < keys; j++)
        {
            double dot = 0;
            for (int t = 0; t < d; t++) dot += (double)q[t] * kv[j * stride + t];
            Assert.True(Math.Abs(dot - scores[j]) < 1e-5, $"score {j}: {scores[j]} vs {dot}");
        }

        var p = Random(keys, 6);
        p[keys / 2] = 0f;
        kv[(keys / 2) * stride] = float.PositiveInfinity; // a key of zero probability is skipped, not multiplied
        var output = Random(d, 7);
        var expected = output.Select(v => (double)v).ToArray();
        for (int j = 0; j < keys; j++)
            if (p[j] != 0f)
                for (int t = 0; t < d; t++) expected[t] += (double)p[j] * kv[j * stride + t];
        AttentionRows.WeightedSum(p, kv, stride, d, output);
        for (int t = 0; t < d; t++) Assert.True(Math.Abs(expected[t] - output[t]) < 1e-5, $"feature {t}: {output[t]} vs {expected[t]}");
    }

    [Fact]
    public void AttentionRowsRefuseKeysPastTheBuffer()
    {
        var e = Assert.Throws<ArgumentException>(() => AttentionRows.Scores(new float[64], 64, new float[64 * 3], 64, new float[4]));
        Assert.Contains("4 keys of 64", e.Message);
    }

    static float[] Random(int length, int seed)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++) values[i] = (float)random.NextDouble() - 0.5f;
        return values;
    }
}
