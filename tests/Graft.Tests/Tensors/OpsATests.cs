using Graft.Tensors;
using Graft.Tensors.Kernels;
using Graft.Tests.Support;

namespace Graft.Tests.Tensors;

/// <summary>Elementwise, activation, norm, RoPE, attention and reduction ops against PyTorch and finite differences.</summary>
public class OpsATests
{
    public static TheoryData<string> Cases => GoldenCase.Names("ops_a");

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesPyTorch(string name)
    {
        using var c = GoldenCase.Open("ops_a", name);
        var inputs = new Dictionary<string, Tensor>();
        Tensor In(string input)
        {
            if (!inputs.TryGetValue(input, out var t)) inputs[input] = t = c.Input(input, trainable: c.Has("grad." + input));
            return t;
        }
        Tensor Weight(string input) => c.String("weight_dtype") == "F32" ? In(input) : c.Input(input).ToDType(Enum.Parse<DType>(c.String("weight_dtype")));

        if (c.Op == "rope_default")
        {
            var rope = RotaryEmbedding.Default(c.Int("head_dim"), c.Args.GetProperty("theta").GetDouble());
            TensorAssert.Close(c.Expected("inv_freq").ToArray(), rope.InverseFrequencies, rtol: 1e-6f, atol: 0f, what: name);
            return;
        }

        var outputs = new Dictionary<string, Tensor>();
        switch (c.Op)
        {
            case "mul": outputs["y"] = Ops.Mul(In("a"), In("b")); break;
            case "sub": outputs["y"] = Ops.Sub(In("a"), In("b")); break;
            case "scale": outputs["y"] = Ops.Scale(In("x"), c.Float("s")); break;
            case "silu": outputs["y"] = Ops.Silu(In("x")); break;
            case "gelu": outputs["y"] = Ops.Gelu(In("x")); break;
            case "gelu_tanh": outputs["y"] = Ops.Gelu(In("x"), tanhApproximation: true); break;
            case "quick_gelu": outputs["y"] = Ops.QuickGelu(In("x")); break;
            case "swiglu": outputs["y"] = Ops.SwiGlu(In("gate"), In("up")); break;
            case "softmax": outputs["y"] = Ops.Softmax(In("x")); break;
            case "rms_norm": outputs["y"] = Ops.RmsNorm(In("x"), Weight("weight"), c.Float("eps")); break;
            case "layer_norm": outputs["y"] = Ops.LayerNorm(In("x"), Weight("weight"), c.Bool("bias") ? Weight("bias") : null, c.Float("eps")); break;
            case "rope":
                var embedding = new RotaryEmbedding(c.Input("inv_freq").ToArray(), c.Float("scaling"));
                outputs["y"] = Ops.Rope(In("x"), embedding, c.Integers("positions"));
                break;
            case "attention":
                var q = In("q");
                var mask = MaskOf(c, q.Shape[0], q.Shape[1], In("k").Shape[1]);
                var result = Ops.Attention(q, In("k"), In("v"), mask, c.Float("scale"), returnWeights: c.Bool("weights"));
                outputs["y"] = result.Output;
                if (result.Weights is not null) outputs["weights"] = result.Weights;
                break;
            case "sum": outputs["y"] = Ops.Sum(In("x")); break;
            case "mean": outputs["y"] = Ops.Mean(In("x")); break;
            case "mean_axis": outputs["y"] = Ops.Mean(In("x"), c.Int("axis")); break;
            default: throw new InvalidOperationException($"golden case {name} has unknown op '{c.Op}'");
        }

        Tensor? loss = null;
        foreach (var (outputName, output) in outputs)
        {
            TensorAssert.Close(c.Expected(outputName), output, what: $"{name} {outputName}");
            var term = Ops.Sum(Ops.Mul(output, c.Input(outputName == "y" ? "upstream" : "upstream_" + outputName)));
            loss = loss is null ? term : Ops.Add(loss, term);
        }
        var trainable = inputs.Where(pair => pair.Value.RequiresGrad).ToList();
        Assert.NotEmpty(trainable);
        loss!.Backward();
        foreach (var (inputName, input) in trainable)
        {
            var actual = input.Grad ?? Tensor.Zeros(input.Shape);
            TensorAssert.Close(c.ExpectedGrad(inputName), actual, what: $"{name} grad {inputName}");
        }
    }

    private static AttentionMask MaskOf(GoldenCase c, int batch, int tq, int tk)
    {
        bool causal = c.Bool("causal");
        int offset = c.Int("query_offset");
        if (!c.Bool("pattern")) return causal ? AttentionMask.Causal(offset) : AttentionMask.None;
        var allowed = Array.ConvertAll(c.Integers("allowed"), v => v != 0);
        return AttentionMask.FromAllowed(allowed, allowed.Length / (tq * tk), tq, tk, causal, offset);
    }

    private static Tensor Random(int seed, float scale, params int[] shape)
    {
        var random = new Random(seed);
        var data = new float[Tensor.ShapeLength(shape)];
        for (int i = 0; i < data.Length; i++) data[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return Tensor.Parameter(data, shape);
    }

    public static TheoryData<string> UnaryOps => new() { "silu", "gelu", "gelu_tanh", "quick_gelu", "softmax", "scale", "sum", "mean", "mean_axis" };

    [Theory]
    [MemberData(nameof(UnaryOps))]
    public void UnaryGradientsMatchFiniteDifferences(string op)
    {
        var x = Random(op.Length, 2.5f, 3, 5);
        Func<Tensor> f = op switch
        {
            "silu" => () => Ops.Silu(x),
            "gelu" => () => Ops.Gelu(x),
            "gelu_tanh" => () => Ops.Gelu(x, tanhApproximation: true),
            "quick_gelu" => () => Ops.QuickGelu(x),
            "softmax" => () => Ops.Softmax(x),
            "scale" => () => Ops.Scale(x, 1.5f),
            "sum" => () => Ops.Sum(x),
            "mean" => () => Ops.Mean(x),
            _ => () => Ops.Mean(x, 0),
        };
        FiniteDifference.Check(f, [x]);
    }

    [Fact]
    public void BinaryGradientsMatchFiniteDifferences()
    {
        var a = Random(1, 1f, 2, 3, 4);
        var b = Random(2, 1f, 3, 4);
        FiniteDifference.Check(() => Ops.Mul(a, b), [a, b]);
        FiniteDifference.Check(() => Ops.Sub(a, b), [a, b]);
        var gate = Random(3, 2f, 2, 9);
        var up = Random(4, 1f, 2, 9);
        FiniteDifference.Check(() => Ops.SwiGlu(gate, up), [gate, up]);
    }

    [Fact]
    public void NormGradientsMatchFiniteDifferences()
    {
        var x = Random(5, 2f, 3, 6);
        var weight = Random(6, 1f, 6);
        var bias = Random(7, 1f, 6);
        FiniteDifference.Check(() => Ops.RmsNorm(x, weight, 1e-5f), [x, weight]);
        FiniteDifference.Check(() => Ops.LayerNorm(x, weight, bias, 1e-5f), [x, weight, bias]);
    }

    [Fact]
    public void RopeGradientMatchesFiniteDifferences()
    {
        var x = Random(8, 1f, 2, 3, 2, 6);
        var rope = new RotaryEmbedding([1f, 0.1f], attentionScaling: 1.1f);
        FiniteDifference.Check(() => Ops.Rope(x, rope, [4, 0, 9]), [x]);
    }

    [Fact]
    public void AttentionGradientsMatchFiniteDifferencesThroughOutputAndWeights()
    {
        var q = Random(9, 1f, 2, 3, 4, 3);
        var k = Random(10, 1f, 2, 5, 2, 3);
        var v = Random(11, 1f, 2, 5, 2, 3);
        var mask = AttentionMask.FromAllowed([.. Enumerable.Range(0, 15).Select(i => i % 4 != 1)], 1, 3, 5, causal: true, queryOffset: 2);
        FiniteDifference.Check(() => Ops.Attention(q, k, v, mask, 0.6f).Output, [q, k, v]);
        FiniteDifference.Check(() => Ops.Attention(q, k, v, mask, 0.6f, returnWeights: true).Weights!, [q, k, v]);
    }

    [Fact]
    public void FullyMaskedQueryRowGivesZeroOutputAndZeroGradient()
    {
        var q = Random(12, 1f, 1, 2, 1, 4);
        var k = Random(13, 1f, 1, 3, 1, 4);
        var v = Random(14, 1f, 1, 3, 1, 4);
        var mask = AttentionMask.FromAllowed([true, false, true, false, false, false], 1, 2, 3);
        var result = Ops.Attention(q, k, v, mask, 0.5f, returnWeights: true);
        var output = result.Output.ToArray();
        Assert.All(output, value => Assert.False(float.IsNaN(value)));
        Assert.Equal(new float[4], output[4..]);
        Assert.Equal(new float[3], result.Weights!.ToArray()[3..]);
        Assert.NotEqual(0f, output[0]);
        result.Output.Backward(Tensor.Full(1f, 1, 2, 1, 4));
        Assert.Equal(new float[4], q.Grad!.ToArray()[4..]);
        Assert.All(q.Grad.ToArray()[..4], value => Assert.True(float.IsFinite(value)));
    }

    [Fact]
    public void DecodeStepMatchesTheLastRowOfAFullCausalPass()
    {
        var q = Random(15, 1f, 1, 6, 4, 8);
        var k = Random(16, 1f, 1, 6, 2, 8);
        var v = Random(17, 1f, 1, 6, 2, 8);
        using var _ = Autograd.NoGrad();
        var full = Ops.Attention(q, k, v, AttentionMask.Causal(), 0.35f).Output.ToArray();
        var lastQuery = Tensor.FromArray(q.ToArray()[(5 * 32)..], 1, 1, 4, 8);
        var step = Ops.Attention(lastQuery, k, v, AttentionMask.Causal(queryOffset: 5), 0.35f).Output.ToArray();
        TensorAssert.Close(full[(5 * 32)..], step, what: "decode step");
    }

    [Fact]
    public void ShapeMismatchesAreReportedWithTheShapes()
    {
        var a = Tensor.Zeros(2, 3);
        Assert.Contains("[4] does not broadcast to [2, 3]", Assert.Throws<ArgumentException>(() => Ops.Mul(a, Tensor.Zeros(4))).Message);
        Assert.Contains("sub", Assert.Throws<ArgumentException>(() => Ops.Sub(a, Tensor.Zeros(2))).Message);
        Assert.Contains("swiglu: shapes [2, 3] and [3, 2] differ", Assert.Throws<ArgumentException>(() => Ops.SwiGlu(a, Tensor.Zeros(3, 2))).Message);
        var weight = Tensor.Zeros(4);
        weight.Name = "model.norm.weight";
        Assert.Contains("'model.norm.weight' [4] does not match the last axis of input [2, 3]",
            Assert.Throws<ArgumentException>(() => Ops.RmsNorm(a, weight, 1e-6f)).Message);
        Assert.Contains("bias", Assert.Throws<ArgumentException>(() => Ops.LayerNorm(a, Tensor.Zeros(3), Tensor.Zeros(2), 1e-5f)).Message);
        Assert.Contains("axis 2 is outside [2, 3]", Assert.Throws<ArgumentOutOfRangeException>(() => Ops.Mean(a, 2)).Message);

        var x = Tensor.Zeros(1, 4, 2, 8);
        var rope = RotaryEmbedding.Default(8, 10000);
        Assert.Contains("3 positions", Assert.Throws<ArgumentException>(() => Ops.Rope(x, rope, [0, 1, 2])).Message);
        Assert.Contains("rotary size 16 exceeds head size 8", Assert.Throws<ArgumentException>(() => Ops.Rope(x, RotaryEmbedding.Default(16, 10000), [0, 1, 2, 3])).Message);

        var q = Tensor.Zeros(1, 2, 3, 8);
        var kv = Tensor.Zeros(1, 4, 2, 8);
        Assert.Contains("3 query heads are not a multiple of 2", Assert.Throws<ArgumentException>(() => Ops.Attention(q, kv, kv, AttentionMask.None, 1f)).Message);
        var q4 = Tensor.Zeros(1, 2, 4, 8);
        Assert.Contains("needs at least 5 keys", Assert.Throws<ArgumentException>(() => Ops.Attention(q4, kv, kv, AttentionMask.Causal(3), 1f)).Message);
        var pattern = AttentionMask.FromAllowed(new bool[2 * 2 * 5], 2, 2, 5);
        Assert.Contains("does not fit batch 1, 2 queries, 4 keys", Assert.Throws<ArgumentException>(() => Ops.Attention(q4, kv, kv, pattern, 1f)).Message);
        Assert.Contains("k [1, 4, 2, 8] and v [1, 3, 2, 8] differ", Assert.Throws<ArgumentException>(() => Ops.Attention(q4, kv, Tensor.Zeros(1, 3, 2, 8), AttentionMask.None, 1f)).Message);
        Assert.Contains("expected batch·tq·tk", Assert.Throws<ArgumentException>(() => AttentionMask.FromAllowed(new bool[3], 1, 2, 2)).Message);
    }

    [Fact]
    public void NothingIsRecordedUnderNoGrad()
    {
        var x = Random(18, 1f, 1, 2, 2, 4);
        var w = Random(19, 1f, 4);
        using var _ = Autograd.NoGrad();
        var results = new[]
        {
            Ops.Mul(x, w), Ops.Sub(x, w), Ops.Scale(x, 2f), Ops.Silu(x), Ops.Gelu(x), Ops.Gelu(x, true), Ops.QuickGelu(x),
            Ops.SwiGlu(x, x), Ops.Softmax(x), Ops.RmsNorm(x, w, 1e-6f), Ops.LayerNorm(x, w, w, 1e-5f),
            Ops.Rope(x, RotaryEmbedding.Default(4, 10000), [0, 1]), Ops.Sum(x), Ops.Mean(x), Ops.Mean(x, 1),
            Ops.Attention(x, x, x, AttentionMask.Causal(), 0.5f, returnWeights: true).Output,
            Ops.Attention(x, x, x, AttentionMask.Causal(), 0.5f, returnWeights: true).Weights!,
        };
        Assert.All(results, r => Assert.False(r.RequiresGrad));
    }

    [Fact]
    public void ErfIsWithinTwoUlpsOfADoublePrecisionReference()
    {
        var x = new float[20001];
        for (int i = 0; i < x.Length; i++) x[i] = -5f + i * 0.0005f;
        var y = new float[x.Length];
        Activations.Erf(x, y);
        for (int i = 0; i < x.Length; i++)
        {
            double expected = ReferenceErf(x[i]);
            double allowed = 2.5e-7 * Math.Abs(expected) + 1e-30;
            Assert.True(Math.Abs(y[i] - expected) <= allowed, $"erf({x[i]}) = {y[i]}, expected {expected}");
        }
        float[] special = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, 0f];
        var result = new float[4];
        Activations.Erf(special, result);
        Assert.True(float.IsNaN(result[0]));
        Assert.Equal([1f, -1f, 0f], result[1..]);
    }

    /// <summary>erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3···(2n+1)): all terms positive, so accurate in double.</summary>
    private static double ReferenceErf(double x)
    {
        double term = x, sum = x;
        for (int n = 1; n < 200 && Math.Abs(term) > 1e-18 * Math.Abs(sum); n++)
        {
            term *= 2 * x * x / (2 * n + 1);
            sum += term;
        }
        return 2 / Math.Sqrt(Math.PI) * Math.Exp(-x * x) * sum;
    }
}
