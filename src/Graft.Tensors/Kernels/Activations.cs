using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Graft.Tensors.Kernels;

/// <summary>An elementwise function of one input, 8 lanes at a time.</summary>
internal interface IUnaryKernel
{
    static abstract Vector256<float> Invoke(Vector256<float> x);
}

/// <summary>An elementwise function of an input and an upstream gradient (a backward), 8 lanes at a time.</summary>
internal interface IBinaryKernel
{
    static abstract Vector256<float> Invoke(Vector256<float> x, Vector256<float> g);
}

/// <summary>
/// Activation functions and their derivatives over flat spans. Every kernel is written once, for
/// Vector256; the tail runs the same code on a padded stack vector, so the last elements get exactly
/// the arithmetic of the others.
/// </summary>
public static class Activations
{
    private const float InvSqrt2 = 0.70710678118654752f;
    private const float InvSqrt2Pi = 0.39894228040143268f;
    private const float SqrtTwoOverPi = 0.79788456080286536f;
    private const float TanhCubic = 0.044715f;
    private const float QuickGeluAlpha = 1.702f;

    /// <summary>y = erf(x), within about 2 float ulps (relative error below 2e-7 everywhere).</summary>
    public static void Erf(ReadOnlySpan<float> x, Span<float> y) => Apply<ErfKernel>(x, y);

    /// <summary>y = x·sigmoid(x).</summary>
    public static void Silu(ReadOnlySpan<float> x, Span<float> y) => Apply<SiluKernel>(x, y);

    /// <summary>dx = dy · d silu(x)/dx.</summary>
    public static void SiluBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx) => Apply<SiluGradKernel>(x, dy, dx);

    /// <summary>y = x·Φ(x) = ½x(1 + erf(x/√2)).</summary>
    public static void Gelu(ReadOnlySpan<float> x, Span<float> y) => Apply<GeluKernel>(x, y);

    public static void GeluBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx) => Apply<GeluGradKernel>(x, dy, dx);

    /// <summary>y = ½x(1 + tanh(√(2/π)(x + 0.044715x³))), PyTorch's approximate='tanh'.</summary>
    public static void GeluTanh(ReadOnlySpan<float> x, Span<float> y) => Apply<GeluTanhKernel>(x, y);

    public static void GeluTanhBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx) => Apply<GeluTanhGradKernel>(x, dy, dx);

    /// <summary>y = x·sigmoid(1.702x), the CLIP approximation.</summary>
    public static void QuickGelu(ReadOnlySpan<float> x, Span<float> y) => Apply<QuickGeluKernel>(x, y);

    public static void QuickGeluBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx) => Apply<QuickGeluGradKernel>(x, dy, dx);

    internal static void Apply<TKernel>(ReadOnlySpan<float> x, Span<float> y) where TKernel : IUnaryKernel
    {
        if (y.Length < x.Length) throw new ArgumentException("destination too short", nameof(y));
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        int i = 0;
        for (; i <= x.Length - 8; i += 8)
            TKernel.Invoke(Vector256.LoadUnsafe(ref xr, (nuint)i)).StoreUnsafe(ref yr, (nuint)i);
        if (i < x.Length)
        {
            Span<float> tail = stackalloc float[8];
            x[i..].CopyTo(tail);
            var result = TKernel.Invoke(Vector256.Create<float>(tail));
            for (int j = 0; i + j < x.Length; j++) y[i + j] = result[j];
        }
    }

    internal static void Apply<TKernel>(ReadOnlySpan<float> x, ReadOnlySpan<float> g, Span<float> y) where TKernel : IBinaryKernel
    {
        if (g.Length < x.Length || y.Length < x.Length) throw new ArgumentException("spans differ in length");
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float yr = ref MemoryMarshal.GetReference(y);
        int i = 0;
        for (; i <= x.Length - 8; i += 8)
            TKernel.Invoke(Vector256.LoadUnsafe(ref xr, (nuint)i), Vector256.LoadUnsafe(ref gr, (nuint)i)).StoreUnsafe(ref yr, (nuint)i);
        if (i < x.Length)
        {
            Span<float> tailX = stackalloc float[8];
            Span<float> tailG = stackalloc float[8];
            x[i..].CopyTo(tailX);
            g[i..x.Length].CopyTo(tailG);
            var result = TKernel.Invoke(Vector256.Create<float>(tailX), Vector256.Create<float>(tailG));
            for (int j = 0; i + j < x.Length; j++) y[i + j] = result[j];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, float c) => Vector256.FusedMultiplyAdd(a, b, Vector256.Create(c));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Sigmoid(Vector256<float> x) => Vector256<float>.One / (Vector256<float>.One + Vector256.Exp(-x));

    /// <summary>
    /// erf as two fitted pieces (least squares against a double-precision erf; `ops_golden_a.py --fit-erf` reproduces them):
    /// |x| &lt; 1: x·P(x²), P of degree 7; 1 ≤ |x| &lt; 4: 1 − e^(−x²)·Q((|x| − 2.5)/1.5), Q of degree 12
    /// approximating erfcx; beyond 4, erf rounds to ±1 in float. NaN stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> ErfCore(Vector256<float> x)
    {
        var ax = Vector256.Abs(x);
        var s = ax * ax;
        var p = Fma(Vector256.Create(-9.728331709e-06f), s, 1.128815094e-04f);
        p = Fma(p, s, -8.487264893e-04f);
        p = Fma(p, s, 5.221261334e-03f);
        p = Fma(p, s, -2.686551740e-02f);
        p = Fma(p, s, 1.128378411e-01f);
        p = Fma(p, s, -3.761263859e-01f);
        p = Fma(p, s, 1.128379167e+00f);
        var small = ax * p;

        var t = (Vector256.Min(ax, Vector256.Create(4f)) - Vector256.Create(2.5f)) * Vector256.Create(1f / 1.5f);
        var q = Fma(Vector256.Create(1.358284000e-05f), t, -3.626737624e-05f);
        q = Fma(q, t, 5.560991086e-05f);
        q = Fma(q, t, -1.456378263e-04f);
        q = Fma(q, t, 4.138159559e-04f);
        q = Fma(q, t, -1.015562143e-03f);
        q = Fma(q, t, 2.402032054e-03f);
        q = Fma(q, t, -5.567953035e-03f);
        q = Fma(q, t, 1.248963316e-02f);
        q = Fma(q, t, -2.700562576e-02f);
        q = Fma(q, t, 5.611047801e-02f);
        q = Fma(q, t, -1.115210091e-01f);
        q = Fma(q, t, 2.108063642e-01f);
        var large = Vector256<float>.One - Vector256.Exp(-Vector256.Min(s, Vector256.Create(16f))) * q;
        large = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(ax, Vector256.Create(4f)), Vector256<float>.One, large);

        var magnitude = Vector256.ConditionalSelect(Vector256.LessThan(ax, Vector256<float>.One), small, large);
        magnitude = Vector256.ConditionalSelect(Vector256.IsNaN(x), x, magnitude);
        return Vector256.CopySign(magnitude, x);
    }

    private readonly struct ErfKernel : IUnaryKernel
    {
        public static Vector256<float> Invoke(Vector256<float> x) => ErfCore(x);
    }

    private readonly struct SiluKernel : IUnaryKernel
    {
        public static Vector256<float> Invoke(Vector256<float> x) => x * Sigmoid(x);
    }

    private readonly struct SiluGradKernel : IBinaryKernel
    {
        // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
        public static Vector256<float> Invoke(Vector256<float> x, Vector256<float> g)
        {
            var s = Sigmoid(x);
            return g * s * (Vector256<float>.One + x * (Vector256<float>.One - s));
        }
    }

    private readonly struct GeluKernel : IUnaryKernel
    {
        public static Vector256<float> Invoke(Vector256<float> x) =>
            Vector256.Create(0.5f) * x * (Vector256<float>.One + ErfCore(x * Vector256.Create(InvSqrt2)));
    }

    private readonly struct GeluGradKernel : IBinaryKernel
    {
        // d/dx x·Φ(x) = Φ(x) + x·φ(x)
        public static Vector256<float> Invoke(Vector256<float> x, Vector256<float> g)
        {
            var cdf = Vector256.Create(0.5f) * (Vector256<float>.One + ErfCore(x * Vector256.Create(InvSqrt2)));
            var pdf = Vector256.Create(InvSqrt2Pi) * Vector256.Exp(Vector256.Create(-0.5f) * x * x);
            return g * Vector256.FusedMultiplyAdd(x, pdf, cdf);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Tanh(Vector256<float> u)
    {
        // tanh(u) = 1 − 2/(e^(2u) + 1): exact limits at ±∞, absolute error ~1e-7, which is what GELU needs.
        return Vector256<float>.One - Vector256.Create(2f) / (Vector256.Exp(u + u) + Vector256<float>.One);
    }

    private readonly struct GeluTanhKernel : IUnaryKernel
    {
        public static Vector256<float> Invoke(Vector256<float> x)
        {
            var u = Vector256.Create(SqrtTwoOverPi) * x * Fma(Vector256.Create(TanhCubic), x * x, 1f);
            return Vector256.Create(0.5f) * x * (Vector256<float>.One + Tanh(u));
        }
    }

    private readonly struct GeluTanhGradKernel : IBinaryKernel
    {
        // d/dx ½x(1 + tanh u) = ½(1 + tanh u) + ½x(1 − tanh² u)·√(2/π)(1 + 3·0.044715x²)
        public static Vector256<float> Invoke(Vector256<float> x, Vector256<float> g)
        {
            var x2 = x * x;
            var u = Vector256.Create(SqrtTwoOverPi) * x * Fma(Vector256.Create(TanhCubic), x2, 1f);
            var th = Tanh(u);
            var du = Vector256.Create(SqrtTwoOverPi) * Fma(Vector256.Create(3f * TanhCubic), x2, 1f);
            var half = Vector256.Create(0.5f);
            return g * (half * (Vector256<float>.One + th) + half * x * (Vector256<float>.One - th * th) * du);
        }
    }

    private readonly struct QuickGeluKernel : IUnaryKernel
    {
        public static Vector256<float> Invoke(Vector256<float> x) => x * Sigmoid(Vector256.Create(QuickGeluAlpha) * x);
    }

    private readonly struct QuickGeluGradKernel : IBinaryKernel
    {
        // d/dx x·σ(αx) = σ(αx) + αx·σ(αx)(1 − σ(αx))
        public static Vector256<float> Invoke(Vector256<float> x, Vector256<float> g)
        {
            var s = Sigmoid(Vector256.Create(QuickGeluAlpha) * x);
            return g * (s + Vector256.Create(QuickGeluAlpha) * x * s * (Vector256<float>.One - s));
        }
    }
}
