using BenchmarkDotNet.Attributes;
using Graft.Tensors;
using Graft.Tensors.Kernels;

namespace Graft.Bench;

/// <summary>Engine GEMM at a square size, the prefill linear shape, and the decode matrix-vector shape (f32 and bf16 weights).</summary>
[MemoryDiagnoser]
public class GemmBenchmarks
{
    float[] square = [], squareOut = [];
    float[] prefillX = [], prefillW = [], prefillOut = [];
    float[] decodeX = [], decodeW = [], decodeOut = [];
    ushort[] decodeWBf16 = [];

    const int Square = 1024, Tokens = 512, Hidden = 896, Intermediate = 4864;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        float[] Fill(int length) => Enumerable.Range(0, length).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        square = Fill(Square * Square);
        squareOut = new float[Square * Square];
        prefillX = Fill(Tokens * Hidden);
        prefillW = Fill(Intermediate * Hidden);
        prefillOut = new float[Tokens * Intermediate];
        decodeX = Fill(Hidden);
        decodeW = Fill(Intermediate * Hidden);
        decodeWBf16 = new ushort[decodeW.Length];
        HalfConvert.FloatToBf16(decodeW, decodeWBf16);
        decodeOut = new float[Intermediate];
    }

    /// <summary>C[1024,1024] = A · A.</summary>
    [Benchmark]
    public void GemmSquare1024() =>
        Gemm.Multiply(false, false, Square, Square, Square, square, Square, square, Square, squareOut, Square);

    /// <summary>y[512,4864] = x[512,896] · W[4864,896]ᵀ.</summary>
    [Benchmark]
    public void GemmLinearPrefill() =>
        Gemm.Multiply(false, true, Tokens, Intermediate, Hidden, prefillX, Hidden, prefillW, Hidden, prefillOut, Intermediate);

    /// <summary>y[1,4864] = x[1,896] · W[4864,896]ᵀ, f32 weight.</summary>
    [Benchmark]
    public void GemmMatVecF32() =>
        Gemm.Multiply(false, true, 1, Intermediate, Hidden, decodeX, Hidden, decodeW, Hidden, decodeOut, Intermediate);

    /// <summary>y[1,4864] = x[1,896] · W[4864,896]ᵀ, bf16 weight read in place.</summary>
    [Benchmark]
    public void GemmMatVecBf16() =>
        Gemm.MultiplyHalf(DType.BF16, true, 1, Intermediate, Hidden, decodeX, Hidden, decodeWBf16, Hidden, decodeOut, Intermediate);
}
