using Graft.Tensors;

namespace Graft.Tests.Tensors;

public class AutogradTests
{
    [Fact]
    public void LinearGradientFlowsThroughFrozenWeightToTrainableInput()
    {
        var x = Tensor.Parameter([1f, 2f, 3f], 1, 3);
        var frozen = Tensor.FromArray([1f, 0f, 2f, 0f, 1f, -1f], 2, 3);
        var y = Ops.Linear(x, frozen);
        Assert.Equal([7f, -1f], y.ToArray());
        var loss = Ops.Linear(y, Tensor.FromArray([1f, 1f], 1, 2));
        loss.Backward();
        Assert.Null(frozen.Grad);
        Assert.Equal([1f, 1f, 1f], x.Grad!.ToArray());
    }

    [Fact]
    public void NoGradScopeRecordsNothing()
    {
        var w = Tensor.Parameter([1f, 2f], 1, 2);
        using (Autograd.NoGrad())
        {
            var y = Ops.Linear(Tensor.FromArray([1f, 1f], 1, 2), w);
            Assert.False(y.RequiresGrad);
            Assert.Equal([3f], y.ToArray());
        }
    }

    [Fact]
    public void BroadcastAddSumsGradientOverRows()
    {
        var a = Tensor.Parameter([1f, 2f, 3f, 4f], 2, 2);
        var bias = Tensor.Parameter([10f, 20f], 2);
        var y = Ops.Add(a, bias);
        Assert.Equal([11f, 22f, 13f, 24f], y.ToArray());
        y.Backward(Tensor.FromArray([1f, 2f, 3f, 4f], 2, 2));
        Assert.Equal([4f, 6f], bias.Grad!.ToArray());
        Assert.Equal([1f, 2f, 3f, 4f], a.Grad!.ToArray());
    }

    /// <summary>
    /// Gradients passed on unchanged (reshapes, the first operand of a sum) and arrays computed for one input become that
    /// input's gradient when it has none yet: a tensor used twice, or a parameter over two backward passes, must still add up.
    /// </summary>
    [Fact]
    public void Gradients_taken_over_from_the_pass_still_add_up_for_tensors_used_twice()
    {
        float[] values = [0.5f, -1f, 2f, 3f, -0.25f, 1.5f];
        var p = Tensor.Parameter((float[])values.Clone(), 2, 3);
        var c = Tensor.FromArray([1f, 1f, 1f, 1f, 1f, 1f], 2, 3);

        Ops.Sum(Ops.Add(p, p)).Backward();
        Assert.All(p.Grad!.ToArray(), g => Assert.Equal(2f, g));
        p.Grad = null;

        Ops.Sum(Ops.Sub(p, p)).Backward();
        Assert.All(p.Grad!.ToArray(), g => Assert.Equal(0f, g));
        p.Grad = null;

        Ops.Sum(Ops.Reshape(Ops.Add(Ops.Reshape(p, 3, 2), Ops.Reshape(p, 3, 2)), 6)).Backward();
        Assert.All(p.Grad!.ToArray(), g => Assert.Equal(2f, g));
        p.Grad = null;

        // d/dp Σ (p + c) · p = 2p + c; then a second pass without clearing adds the same again.
        Ops.Sum(Ops.Mul(Ops.Add(p, c), p)).Backward();
        Ops.Sum(Ops.Mul(Ops.Add(p, c), p)).Backward();
        Assert.Equal(values.Select(v => 2 * (2 * v + 1)).ToArray(), p.Grad!.ToArray());
        p.Grad = null;

        // A norm's and an activation's own arrays, into a tensor that also gets a gradient passed on unchanged.
        var weight = Tensor.FromArray([1f, 1f, 1f], 3);
        var h = Ops.Reshape(p, 2, 3);
        Ops.Sum(Ops.Add(h, Ops.Silu(Ops.RmsNorm(h, weight, 1e-6f)))).Backward();
        var separately = Tensor.Parameter((float[])values.Clone(), 2, 3);
        Ops.Sum(Ops.Silu(Ops.RmsNorm(separately, weight, 1e-6f))).Backward();
        Assert.Equal(separately.Grad!.ToArray().Select(g => g + 1f).ToArray(), p.Grad!.ToArray());
    }
}
