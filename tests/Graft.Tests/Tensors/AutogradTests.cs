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
}
