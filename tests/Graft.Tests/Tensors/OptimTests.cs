using Graft.Tensors;
using Graft.Tensors.Optim;
using Graft.Tests.Support;

namespace Graft.Tests.Tensors;

public class OptimTests
{
    [Fact]
    public void AdamWTrajectoryMatchesPyTorch()
    {
        using var c = GoldenCase.Open("ops_b", "adamw_trajectory");
        string[] names = ["w1", "w2", "b1"];
        var parameters = names.ToDictionary(n => n, n => c.Input("initial." + n, trainable: true));
        foreach (var (name, p) in parameters) p.Name = name;
        var optimizer = new AdamW(
            [new ParameterGroup([parameters["w1"], parameters["w2"]], c.Float("baseLr"), c.Float("weightDecay")),
             new ParameterGroup([parameters["b1"]], c.Float("baseLr"), 0f)],
            c.Float("beta1"), c.Float("beta2"), c.Float("eps"));
        var schedule = LearningRateSchedule.WarmupCosine(c.Float("baseLr"), c.Int("warmup"), c.Int("total"), c.Float("minLr"));

        for (int step = 0; step < c.Int("steps"); step++)
        {
            optimizer.ZeroGrad();
            foreach (var (name, p) in parameters)
                if (c.Has($"in.grad{step}.{name}")) p.Grad = c.Input($"grad{step}.{name}");
            float lr = schedule(step);
            Assert.Equal(c.Expected($"lr{step}").ToArray()[0], lr, 1e-9f);
            foreach (var group in optimizer.Groups) group.LearningRate = lr;
            float norm = GradientClipping.ClipByGlobalNorm(parameters.Values, c.Float("maxNorm"));
            Assert.Equal(c.Expected($"norm{step}").ToArray()[0], norm, 1e-5f);
            optimizer.Step();
            foreach (var (name, p) in parameters)
                TensorAssert.Close(c.Expected($"step{step}.{name}"), p, rtol: 1e-6f, atol: 1e-6f, what: $"step {step} {name}");
        }
    }

    [Fact]
    public void ParameterGroupRejectsFrozenAndHalfTensors()
    {
        var frozen = Tensor.Zeros(3);
        frozen.Name = "base.weight";
        var error = Assert.Throws<ArgumentException>(() => new ParameterGroup([frozen], 1e-3f, 0f));
        Assert.Contains("'base.weight'", error.Message);
        Assert.Contains("frozen", error.Message);
        Assert.Contains("BF16", Assert.Throws<ArgumentException>(() => new ParameterGroup([Tensor.Zeros(3).ToDType(DType.BF16)], 1e-3f, 0f)).Message);
        var p = Tensor.Parameter([1f], 1);
        Assert.Throws<ArgumentException>(() => new AdamW([new ParameterGroup([p], 1e-3f, 0f), new ParameterGroup([p], 1e-3f, 0f)]));
    }

    [Fact]
    public void StepSkipsParametersWithoutGradient()
    {
        var a = Tensor.Parameter([1f, 2f], 2);
        var b = Tensor.Parameter([3f], 1);
        var optimizer = new AdamW([new ParameterGroup([a, b], 0.1f, 0.5f)]);
        a.Grad = Tensor.FromArray([1f, -1f], 2);
        optimizer.Step();
        Assert.Equal([3f], b.ToArray());
        // First Adam step moves each element by lr·sign(g) (bias-corrected), after decay by (1 - lr·wd).
        Assert.Equal(1f * 0.95f - 0.1f, a.ToArray()[0], 1e-6f);
        Assert.Equal(2f * 0.95f + 0.1f, a.ToArray()[1], 1e-6f);
        Assert.DoesNotContain("b.step", optimizer.StateTensors(t => ReferenceEquals(t, a) ? "a" : "b").Keys);
    }

    [Fact]
    public void StateRoundTripContinuesTheSameTrajectory()
    {
        static (Tensor, AdamW) Make()
        {
            var p = Tensor.Parameter([0.5f, -1f, 2f], 3);
            return (p, new AdamW([new ParameterGroup([p], 0.05f, 0.1f)]));
        }
        float[][] gradients = [[0.3f, -0.2f, 0.1f], [0.1f, 0.4f, -0.5f], [-0.2f, 0.2f, 0.3f]];
        var (original, optimizer) = Make();
        for (int i = 0; i < 2; i++)
        {
            original.Grad = Tensor.FromArray((float[])gradients[i].Clone(), 3);
            optimizer.Step();
        }
        var state = optimizer.StateTensors(_ => "p");
        Assert.Equal(2f, state["p.step"].ToArray()[0]);

        var (restored, resumed) = Make();
        original.Span.CopyTo(restored.Span);
        resumed.LoadState(state, _ => "p");
        original.Grad = Tensor.FromArray((float[])gradients[2].Clone(), 3);
        restored.Grad = Tensor.FromArray((float[])gradients[2].Clone(), 3);
        optimizer.Step();
        resumed.Step();
        Assert.Equal(original.ToArray(), restored.ToArray());
    }

    [Fact]
    public void LoadStateRejectsCheckpointsThatDoNotFit()
    {
        var p = Tensor.Parameter([1f, 2f], 2);
        var optimizer = new AdamW([new ParameterGroup([p], 0.1f, 0f)]);
        var wrongShape = new Dictionary<string, Tensor> { ["p.step"] = Tensor.FromArray([1f], 1), ["p.exp_avg"] = Tensor.Zeros(3), ["p.exp_avg_sq"] = Tensor.Zeros(3) };
        Assert.Contains("shape [3]", Assert.Throws<ArgumentException>(() => optimizer.LoadState(wrongShape, _ => "p")).Message);
        var partial = new Dictionary<string, Tensor> { ["p.step"] = Tensor.FromArray([1f], 1) };
        Assert.Contains("incomplete", Assert.Throws<ArgumentException>(() => optimizer.LoadState(partial, _ => "p")).Message);
        var stray = new Dictionary<string, Tensor> { ["q.step"] = Tensor.FromArray([1f], 1) };
        Assert.Contains("'q.step'", Assert.Throws<ArgumentException>(() => optimizer.LoadState(stray, _ => "p")).Message);
    }

    [Fact]
    public void WarmupCosineRisesLinearlyThenFallsToMinimum()
    {
        var lr = LearningRateSchedule.WarmupCosine(1f, 4, 12, 0.1f);
        Assert.Equal(0f, lr(0));
        Assert.Equal(0.5f, lr(2), 1e-7f);
        Assert.Equal(1f, lr(4), 1e-7f);
        Assert.Equal(0.55f, lr(8), 1e-6f); // half-way down the cosine: min + (base - min) / 2
        Assert.Equal(0.1f, lr(12), 1e-7f);
        Assert.Equal(0.1f, lr(20), 1e-7f);
        Assert.Throws<ArgumentOutOfRangeException>(() => LearningRateSchedule.WarmupCosine(1f, 5, 4));
    }

    [Fact]
    public void ClipByGlobalNormScalesOnlyAboveTheLimit()
    {
        var a = Tensor.Parameter([0f, 0f], 2);
        var b = Tensor.Parameter([0f], 1);
        var untouched = Tensor.Parameter([0f], 1);
        a.Grad = Tensor.FromArray([3f, 0f], 2);
        b.Grad = Tensor.FromArray([4f], 1);
        Assert.Equal(5f, GradientClipping.ClipByGlobalNorm([a, b, untouched], 10f));
        Assert.Equal([3f, 0f], a.Grad.ToArray());
        Assert.Equal(5f, GradientClipping.ClipByGlobalNorm([a, b, untouched], 1f));
        Assert.Equal(0.6f, a.Grad.ToArray()[0], 1e-6f);
        Assert.Equal(0.8f, b.Grad.ToArray()[0], 1e-6f);
        Assert.Null(untouched.Grad);
    }

    [Fact]
    public void TwoAccumulatedHalfBatchesEqualOneFullBatch()
    {
        var weight = Tensor.Parameter(Enumerable.Range(0, 15).Select(i => MathF.Sin(i)).ToArray(), 5, 3);
        var x = Tensor.FromArray(Enumerable.Range(0, 12).Select(i => MathF.Cos(i)).ToArray(), 4, 3);
        int[] targets = [1, 4, 0, 2];

        Ops.CrossEntropy(Ops.Linear(x, weight), targets).Backward();
        var full = weight.Grad!.ToArray();

        weight.Grad = null;
        const int accumulationSteps = 2;
        for (int half = 0; half < accumulationSteps; half++)
        {
            var loss = Ops.CrossEntropy(Ops.Linear(Ops.Slice(x, 0, half * 2, 2), weight), targets.AsSpan(half * 2, 2));
            loss.Backward(Tensor.Full(1f / accumulationSteps, loss.Shape)); // the loss scaled by 1/steps
        }
        TensorAssert.Close(full, weight.Grad!.ToArray(), rtol: 1e-5f, atol: 1e-7f, what: "accumulated gradient");
    }

    [Fact]
    public void SplitByDecayKeepsBiasesNormsAndVectorsUndecayed()
    {
        var named = new (string, Tensor)[]
        {
            ("proj.weight", Tensor.Parameter(new float[4], 2, 2)),
            ("proj.bias", Tensor.Parameter(new float[2], 2)),
            ("ln.norm_w", Tensor.Parameter(new float[4], 2, 2)),
            ("scale", Tensor.Parameter(new float[1], 1)),
        };
        var groups = ParameterGroup.SplitByDecay(named, 1e-3f, 0.02f);
        Assert.Equal([named[0].Item2], groups[0].Parameters);
        Assert.Equal(0.02f, groups[0].WeightDecay);
        Assert.Equal(3, groups[1].Parameters.Count);
        Assert.Equal(0f, groups[1].WeightDecay);
    }
}
