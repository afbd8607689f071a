using Graft.Tensors;
using Graft.Tensors.Kernels;

namespace Graft.Tests.Tensors;

public class GemmTests
{
    // Sizes cross every path: direct (tiny), matrix-vector (m or n = 1), packed with edge tiles (17, 33, 129),
    // and packed on two threads split by rows (65x100) or by columns (40x200), with more than one KC slice;
    // 1100 rows give each thread more than the 512 rows whose packed A is kept across column blocks.
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 }, { 1, 7, 17 }, { 7, 1, 33 }, { 7, 7, 7 }, { 17, 33, 9 }, { 33, 17, 129 },
        { 129, 33, 17 }, { 3, 129, 300 }, { 1, 129, 300 }, { 300, 1, 129 }, { 65, 100, 300 }, { 40, 200, 140 }, { 1100, 40, 64 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MultiplyMatchesReferenceForEveryTransposeAndBeta(int m, int n, int k)
    {
        foreach (bool transA in new[] { false, true })
        foreach (bool transB in new[] { false, true })
        foreach (float beta in new[] { 0f, 1f, 0.5f })
            CheckFloat(transA, transB, m, n, k, beta, pad: 0);
    }

    [Theory]
    [InlineData(33, 17, 129)]
    [InlineData(1, 40, 70)]
    [InlineData(40, 1, 70)]
    [InlineData(50, 200, 260)]
    public void MultiplyHonoursLeadingDimensionsWiderThanTheRows(int m, int n, int k)
    {
        foreach (bool transA in new[] { false, true })
        foreach (bool transB in new[] { false, true })
            CheckFloat(transA, transB, m, n, k, beta: 1f, pad: 5);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MultiplyHalfMatchesReferenceForBf16AndF16(int m, int n, int k)
    {
        foreach (var type in new[] { DType.BF16, DType.F16 })
        foreach (bool transB in new[] { false, true })
        foreach (float beta in new[] { 0f, 1f })
            CheckHalf(type, transB, m, n, k, beta, pad: 0);
    }

    [Fact]
    public void MultiplyHalfHonoursLeadingDimensions()
    {
        foreach (var type in new[] { DType.BF16, DType.F16 })
        foreach (bool transB in new[] { false, true })
        {
            CheckHalf(type, transB, 1, 70, 90, 1f, pad: 3);
            CheckHalf(type, transB, 50, 70, 90, 0f, pad: 3);
        }
    }

    [Fact]
    public void Vector256FallbackMatchesReference()
    {
        bool saved = Gemm.UseAvx512;
        Gemm.UseAvx512 = false;
        try
        {
            foreach (bool transA in new[] { false, true })
            foreach (bool transB in new[] { false, true })
            {
                CheckFloat(transA, transB, 33, 45, 70, 1f, pad: 2);
                CheckFloat(transA, transB, 1, 45, 70, 0f, pad: 0);
            }
            CheckHalf(DType.BF16, true, 1, 45, 70, 0f, pad: 0);
            CheckHalf(DType.BF16, true, 20, 45, 70, 0f, pad: 0);
        }
        finally
        {
            Gemm.UseAvx512 = saved;
        }
    }

    [Fact]
    public void ZeroInnerDimensionScalesC()
    {
        var c = new float[] { 1, 2, 3, 4, 5, 6 };
        Gemm.Multiply(false, false, 2, 3, 0, [], 0, [], 3, c, 3, beta: 0.5f);
        Assert.Equal([0.5f, 1f, 1.5f, 2f, 2.5f, 3f], c);
        Gemm.Multiply(false, false, 2, 3, 0, [], 0, [], 3, c, 3);
        Assert.All(c, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void BetaZeroIgnoresGarbageInC()
    {
        foreach (var (m, n, k) in new[] { (2, 2, 2), (1, 50, 50), (50, 1, 50), (40, 60, 70) })
        {
            var a = Random(m * k, 1);
            var b = Random(k * n, 2);
            var c = Enumerable.Repeat(float.NaN, m * n).ToArray();
            Gemm.Multiply(false, false, m, n, k, a, k, b, n, c, n);
            Assert.All(c, v => Assert.False(float.IsNaN(v)));
        }
    }

    [Fact]
    public void RejectsSpansTooShortForTheirShape()
    {
        var a = new float[6];
        var b = new float[6];
        var c = new float[4];
        var ex = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 2, 2, 4, a, 4, b, 2, c, 2));
        Assert.Equal("a", ex.ParamName);
        Assert.Contains("needs 8", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 2, 2, 3, a, 3, b, 2, new float[3], 2));
        Assert.Equal("c", ex.ParamName);
        ex = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, true, 2, 3, 3, a, 3, b, 3, new float[6], 3));
        Assert.Equal("b", ex.ParamName);
        ex = Assert.Throws<ArgumentException>(() => Gemm.MultiplyHalf(DType.BF16, false, 2, 2, 3, a, 3, new ushort[5], 2, c, 2));
        Assert.Equal("b", ex.ParamName);
    }

    [Fact]
    public void RejectsBadDimensionsStridesAndTypes()
    {
        var x = new float[16];
        Assert.Throws<ArgumentOutOfRangeException>(() => Gemm.Multiply(false, false, -1, 2, 2, x, 2, x, 2, x, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => Gemm.Multiply(false, false, 2, 2, -3, x, 2, x, 2, x, 2));
        var ex = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 2, 2, 3, x, 2, x, 2, x, 2));
        Assert.Equal("lda", ex.ParamName);
        ex = Assert.Throws<ArgumentException>(() => Gemm.Multiply(false, false, 2, 3, 2, x, 2, x, 3, x, 2));
        Assert.Equal("ldc", ex.ParamName);
        ex = Assert.Throws<ArgumentException>(() => Gemm.MultiplyHalf(DType.F32, false, 2, 2, 2, x, 2, new ushort[4], 2, x, 2));
        Assert.Equal("bType", ex.ParamName);
    }

    static void CheckFloat(bool transA, bool transB, int m, int n, int k, float beta, int pad)
    {
        int lda = (transA ? m : k) + pad, ldb = (transB ? k : n) + pad, ldc = n + pad;
        var a = Random((transA ? k : m) * lda, 11);
        var b = Random((transB ? n : k) * ldb, 12);
        var c = Random(m * ldc, 13);
        var expected = Reference(m, n, k, (i, p) => a[transA ? p * lda + i : i * lda + p],
            (p, j) => b[transB ? j * ldb + p : p * ldb + j], c, ldc, beta);
        Gemm.Multiply(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, beta);
        AssertClose(expected, c, k, $"transA={transA} transB={transB} {m}x{n}x{k} beta={beta} pad={pad}");
    }

    static void CheckHalf(DType type, bool transB, int m, int n, int k, float beta, int pad)
    {
        int lda = k + pad, ldb = (transB ? k : n) + pad, ldc = n + pad;
        var a = Random(m * lda, 21);
        var bits = new ushort[(transB ? n : k) * ldb];
        if (type == DType.BF16) HalfConvert.FloatToBf16(Random(bits.Length, 22), bits);
        else HalfConvert.FloatToF16(Random(bits.Length, 22), bits);
        var b = new float[bits.Length];
        HalfConvert.ToFloat(type, bits, b);
        var c = Random(m * ldc, 23);
        var expected = Reference(m, n, k, (i, p) => a[i * lda + p],
            (p, j) => b[transB ? j * ldb + p : p * ldb + j], c, ldc, beta);
        Gemm.MultiplyHalf(type, transB, m, n, k, a, lda, bits, ldb, c, ldc, beta);
        AssertClose(expected, c, k, $"{type} transB={transB} {m}x{n}x{k} beta={beta} pad={pad}");
    }

    /// <summary>The product in double precision; padding between rows of C must come back untouched.</summary>
    static double[] Reference(int m, int n, int k, Func<int, int, float> a, Func<int, int, float> b,
        float[] c, int ldc, float beta)
    {
        var opA = new double[m * k];
        for (int i = 0; i < m; i++) for (int p = 0; p < k; p++) opA[i * k + p] = a(i, p);
        var opBT = new double[n * k];
        for (int p = 0; p < k; p++) for (int j = 0; j < n; j++) opBT[j * k + p] = b(p, j);
        var result = c.Select(v => (double)v).ToArray();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++) sum += opA[i * k + p] * opBT[j * k + p];
                result[i * ldc + j] = sum + (beta == 0f ? 0 : beta * (double)c[i * ldc + j]);
            }
        return result;
    }

    static void AssertClose(double[] expected, float[] actual, int k, string what)
    {
        // Inputs lie in [-1, 1): a float sum of k products drifts by about sqrt(k) ulps of its magnitude.
        double tolerance = 1e-5 * (4 + Math.Sqrt(k) * 4);
        for (int i = 0; i < expected.Length; i++)
            if (Math.Abs(expected[i] - actual[i]) > tolerance * (1 + Math.Abs(expected[i])))
                Assert.Fail($"{what}: element {i} is {actual[i]}, expected {expected[i]}");
    }

    static float[] Random(int length, int seed)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
        return values;
    }
}
