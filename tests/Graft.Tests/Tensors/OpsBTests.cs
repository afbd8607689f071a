using Graft.Tensors;
using Graft.Tests.Support;

namespace Graft.Tests.Tensors;

/// <summary>Indexing, vision, loss and dropout ops (plus Linear, MatMul, Add) against PyTorch and finite differences.</summary>
public class OpsBTests
{
    private const string Group = "ops_b";

    public static TheoryData<string> OpCases()
    {
        var data = new TheoryData<string>();
        foreach (string name in GoldenCase.Names(Group)) if (!name.StartsWith("adamw", StringComparison.Ordinal)) data.Add(name);
        return data;
    }

    [Theory]
    [MemberData(nameof(OpCases))]
    public void MatchesPyTorch(string name)
    {
        using var c = GoldenCase.Open(Group, name);
        var inputs = new Dictionary<string, Tensor>();
        Tensor In(string input)
        {
            var t = c.Input(input, trainable: c.Has("grad." + input));
            inputs[input] = t;
            return t;
        }

        Tensor y = c.Op switch
        {
            "embedding" => Ops.Embedding(StoredAs(In("weight"), c.String("dtype")), c.Integers("ids"), IntArray(c, "idShape")),
            "concat" => Ops.Concat(Enumerable.Range(0, c.Int("parts")).Select(i => In($"part{i}")).ToArray(), c.Int("axis")),
            "slice" => Ops.Slice(In("x"), c.Int("axis"), c.Int("start"), c.Int("length")),
            "transpose" => Ops.Transpose(In("x"), c.Int("axis0"), c.Int("axis1")),
            "gather_rows" => Ops.GatherRows(In("x"), c.Integers("rows")),
            "scatter_rows" => Ops.ScatterRows(In("x"), c.Integers("rows"), In("source")),
            "patchify" => Ops.Patchify(In("images"), In("weight"), c.Has("in.bias") ? In("bias") : null, c.Int("patch")),
            "pixel_shuffle" => Ops.PixelShuffle(In("x"), c.Int("factor")),
            "cross_entropy" => Ops.CrossEntropy(In("logits"), c.Integers("targets"), c.Int("ignoreIndex")),
            "linear" => Ops.Linear(In("x"), StoredAs(In("weight"), c.Args.TryGetProperty("dtype", out var d) ? d.GetString()! : "f32"),
                c.Has("in.bias") ? In("bias") : null),
            "matmul" => Ops.MatMul(In("a"), In("b")),
            "add" => Ops.Add(In("a"), In("b")),
            _ => throw new InvalidOperationException($"golden case {name} has unknown op '{c.Op}'"),
        };
        TensorAssert.Close(c.Expected("y"), y, what: $"{name} output");

        var withGrad = inputs.Where(kv => c.Has("grad." + kv.Key)).ToList();
        if (withGrad.Count == 0)
        {
            Assert.False(y.RequiresGrad, $"{name}: nothing is trainable, so nothing should be recorded");
            return;
        }
        y.Backward(c.Has("in.upstream") ? c.Input("upstream") : null);
        foreach (var (input, tensor) in withGrad)
            TensorAssert.Close(c.ExpectedGrad(input), tensor.Grad ?? throw new Xunit.Sdk.XunitException($"{name}: no gradient for {input}"), what: $"{name} grad {input}");
    }

    private static Tensor StoredAs(Tensor t, string dtype) => dtype switch
    {
        "f32" => t,
        "bfloat16" => t.ToDType(DType.BF16),
        "float16" => t.ToDType(DType.F16),
        _ => throw new ArgumentException($"unknown dtype {dtype}"),
    };

    private static int[] IntArray(GoldenCase c, string arg) => c.Args.GetProperty(arg).EnumerateArray().Select(e => e.GetInt32()).ToArray();

    private static Tensor Random(int seed, params int[] shape)
    {
        var random = new Random(seed);
        var data = new float[Tensor.ShapeLength(shape)];
        for (int i = 0; i < data.Length; i++) data[i] = (float)(random.NextDouble() * 2 - 1);
        return Tensor.Parameter(data, shape);
    }

    // ---- finite differences, small shapes ----

    [Fact]
    public void EmbeddingGradientMatchesFiniteDifferences()
    {
        var weight = Random(1, 5, 3);
        int[] ids = [4, 0, 4, 2];
        FiniteDifference.Check(() => Ops.Embedding(weight, ids, 2, 2), [weight]);
    }

    [Fact]
    public void ConcatSliceTransposeGradientsMatchFiniteDifferences()
    {
        var a = Random(2, 2, 3, 2);
        var b = Random(3, 2, 1, 2);
        FiniteDifference.Check(() => Ops.Concat([a, b], -2), [a, b]);
        FiniteDifference.Check(() => Ops.Slice(a, 1, 1, 2), [a]);
        FiniteDifference.Check(() => Ops.Transpose(a, 0, 2), [a]);
    }

    [Fact]
    public void GatherAndScatterRowsGradientsMatchFiniteDifferences()
    {
        var x = Random(4, 2, 3, 2);
        var source = Random(5, 2, 2);
        FiniteDifference.Check(() => Ops.GatherRows(x, [5, 1, 5]), [x]);
        FiniteDifference.Check(() => Ops.ScatterRows(x, [3, 0], source), [x, source]);
    }

    [Fact]
    public void PatchifyAndPixelShuffleGradientsMatchFiniteDifferences()
    {
        var images = Random(6, 1, 2, 4, 2);
        var weight = Random(7, 3, 2, 2, 2);
        var bias = Random(8, 3);
        FiniteDifference.Check(() => Ops.Patchify(images, weight, bias, 2), [images, weight, bias]);
        var grid = Random(9, 1, 2, 4, 3);
        FiniteDifference.Check(() => Ops.PixelShuffle(grid, 2), [grid]);
    }

    [Fact]
    public void CrossEntropyGradientMatchesFiniteDifferences()
    {
        var logits = Random(10, 4, 5);
        FiniteDifference.Check(() => Ops.CrossEntropy(logits, [1, -100, 4, 0]), [logits], epsilon: 1e-3f);
    }

    [Fact]
    public void DropoutGradientMatchesFiniteDifferences()
    {
        var x = Random(11, 3, 4);
        FiniteDifference.Check(() => Ops.Dropout(x, 0.5f, new Random(3), training: true), [x]);
    }

    // ---- behaviour and errors ----

    [Fact]
    public void EmbeddingReadsHalfWeightsInPlaceAndRecordsNothingWhenFrozen()
    {
        var table = Tensor.FromArray([1f, 2f, 3f, 4f, 5f, 6f], 3, 2).ToDType(DType.BF16);
        var y = Ops.Embedding(table, [2, 0], 2);
        Assert.Equal([5f, 6f, 1f, 2f], y.ToArray());
        Assert.False(y.RequiresGrad);
    }

    [Fact]
    public void EmbeddingRejectsOutOfRangeIdNamingItsPosition()
    {
        var table = Tensor.Zeros(4, 2);
        var error = Assert.Throws<ArgumentException>(() => Ops.Embedding(table, [0, 1, 2, 9, 3, 1], 2, 3));
        Assert.Contains("id 9", error.Message);
        Assert.Contains("position [1, 0]", error.Message);
        Assert.Throws<ArgumentException>(() => Ops.Embedding(table, [-1], 1));
    }

    [Fact]
    public void ScatterRowsRejectsDuplicateRows()
    {
        var error = Assert.Throws<ArgumentException>(() => Ops.ScatterRows(Tensor.Zeros(4, 2), [2, 0, 2], Tensor.Zeros(3, 2)));
        Assert.Contains("row 2 appears at positions 0 and 2", error.Message);
        Assert.Throws<ArgumentException>(() => Ops.ScatterRows(Tensor.Zeros(4, 2), [1], Tensor.Zeros(1, 3)));
        Assert.Throws<ArgumentException>(() => Ops.GatherRows(Tensor.Zeros(4, 2), [4]));
    }

    [Fact]
    public void ScatterRowsLeavesItsInputUntouched()
    {
        var x = Tensor.FromArray([1f, 2f, 3f, 4f], 2, 2);
        var y = Ops.ScatterRows(x, [1], Tensor.FromArray([9f, 9f], 1, 2));
        Assert.Equal([1f, 2f, 9f, 9f], y.ToArray());
        Assert.Equal([1f, 2f, 3f, 4f], x.ToArray());
    }

    [Fact]
    public void PatchifyRejectsImagesThatAreNotMultiplesOfThePatch()
    {
        var error = Assert.Throws<ArgumentException>(() => Ops.Patchify(Tensor.Zeros(1, 3, 14, 15), Tensor.Zeros(4, 3, 7, 7), null, 7));
        Assert.Contains("multiples of the patch size 7", error.Message);
        Assert.Throws<ArgumentException>(() => Ops.Patchify(Tensor.Zeros(1, 3, 14, 14), Tensor.Zeros(4, 2, 7, 7), null, 7));
    }

    [Fact]
    public void PatchifyReadsBf16Weights()
    {
        var images = Random(12, 1, 2, 4, 4);
        var weight = Random(13, 3, 2, 2, 2).ToDType(DType.BF16);
        var expected = Ops.Patchify(images, weight.ToF32(), null, 2);
        TensorAssert.Close(expected, Ops.Patchify(images, weight, null, 2));
    }

    [Fact]
    public void LayoutOpsRejectBadArguments()
    {
        Assert.Throws<ArgumentException>(() => Ops.PixelShuffle(Tensor.Zeros(1, 3, 4, 2), 2));
        Assert.Throws<ArgumentException>(() => Ops.Slice(Tensor.Zeros(2, 5), 1, 3, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ops.Transpose(Tensor.Zeros(2, 5), 0, 2));
        var error = Assert.Throws<ArgumentException>(() => Ops.Concat([Tensor.Zeros(2, 3), Tensor.Zeros(3, 3)], 1));
        Assert.Contains("part 1 [3, 3]", error.Message);
    }

    [Fact]
    public void CrossEntropyRejectsOutOfRangeTargets()
    {
        var error = Assert.Throws<ArgumentException>(() => Ops.CrossEntropy(Tensor.Zeros(2, 5), [0, 5]));
        Assert.Contains("target 5 at row 1", error.Message);
        Assert.Throws<ArgumentException>(() => Ops.CrossEntropy(Tensor.Zeros(2, 5), [0]));
    }

    [Fact]
    public void CrossEntropyOfFullyIgnoredBatchIsZeroWithZeroGradient()
    {
        var logits = Random(14, 3, 4);
        var loss = Ops.CrossEntropy(logits, [-100, -100, -100]);
        Assert.Equal(0f, loss.ToArray()[0]);
        loss.Backward();
        Assert.All(logits.Grad!.ToArray(), g => Assert.Equal(0f, g));
    }

    [Fact]
    public void CrossEntropyIsStableForHugeLogits()
    {
        var loss = Ops.CrossEntropy(Tensor.FromArray([1e4f, 0f, -1e4f], 1, 3), [1]);
        Assert.Equal(1e4f, loss.ToArray()[0], 1e-1f);
    }

    [Fact]
    public void CrossEntropyOverParallelThresholdMatchesRowByRowReference()
    {
        const int rows = 9, vocab = 8000; // above the parallel threshold
        var logits = Random(15, rows, vocab);
        var targets = Enumerable.Range(0, rows).Select(i => i * 797 % vocab).ToArray();
        targets[3] = -100;
        var loss = Ops.CrossEntropy(logits, targets);
        double expected = 0;
        var values = logits.ToArray();
        for (int row = 0; row < rows; row++)
        {
            if (targets[row] < 0) continue;
            double max = values.Skip(row * vocab).Take(vocab).Max();
            double sum = values.Skip(row * vocab).Take(vocab).Sum(v => Math.Exp(v - max));
            expected += max + Math.Log(sum) - values[row * vocab + targets[row]];
        }
        Assert.Equal(expected / (rows - 1), loss.ToArray()[0], 1e-4);
        loss.Backward();
        var grad = logits.Grad!.ToArray();
        for (int row = 0; row < rows; row++) Assert.Equal(0.0, grad.Skip(row * vocab).Take(vocab).Sum(v => (double)v), 1e-5);
        Assert.All(grad.Skip(3 * vocab).Take(vocab), g => Assert.Equal(0f, g));
    }

    [Fact]
    public void DropoutKeepsTheExpectedFractionAndScalesKeptElements()
    {
        const float p = 0.3f;
        var x = Tensor.Full(1f, 100_000);
        var y = Ops.Dropout(x, p, new Random(42), training: true).ToArray();
        int dropped = y.Count(v => v == 0f);
        Assert.InRange(dropped / (double)y.Length, p - 0.01, p + 0.01);
        Assert.All(y.Where(v => v != 0f), v => Assert.Equal(1f / (1f - p), v, 1e-6f));
        Assert.InRange(y.Average(), 0.98, 1.02);
    }

    [Fact]
    public void DropoutIsDeterministicForASeedAndBackwardUsesTheSameMask()
    {
        var x = Random(16, 64);
        var first = Ops.Dropout(x, 0.5f, new Random(7), training: true);
        var second = Ops.Dropout(x, 0.5f, new Random(7), training: true);
        Assert.Equal(first.ToArray(), second.ToArray());
        Assert.NotEqual(first.ToArray(), Ops.Dropout(x, 0.5f, new Random(8), training: true).ToArray());
        first.Backward(Tensor.Full(1f, 64));
        var values = x.ToArray();
        var y = first.ToArray();
        var grad = x.Grad!.ToArray();
        for (int i = 0; i < values.Length; i++) Assert.Equal(y[i] == 0f ? 0f : 2f, grad[i]);
    }

    [Fact]
    public void DropoutIsIdentityOutsideTrainingAndRejectsBadProbability()
    {
        var x = Random(17, 8);
        Assert.Same(x, Ops.Dropout(x, 0.5f, new Random(1), training: false));
        Assert.Same(x, Ops.Dropout(x, 0f, new Random(1), training: true));
        Assert.All(Ops.Dropout(x, 1f, new Random(1), training: true).ToArray(), v => Assert.Equal(0f, v));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ops.Dropout(x, 1.5f, new Random(1), training: true));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ops.Dropout(x, float.NaN, new Random(1), training: true));
    }
}
