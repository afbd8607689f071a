using Graft.Models.Vision;
using Graft.Tensors;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

/// <summary>Gradients through the encoder blocks and the per-block attention-input hook.</summary>
public sealed class VisionTrainingTests
{
    private static Tensor RandomParameter(Random random, float scale, float offset, params int[] shape)
    {
        var data = new float[Tensor.ShapeLength(shape)];
        for (int i = 0; i < data.Length; i++) data[i] = offset + scale * (float)(random.NextDouble() * 2 - 1);
        return Tensor.Parameter(data, shape);
    }

    private static VisionEncoderBlock RandomBlock(Random random, int width, int inner, int heads, VisionActivation activation)
    {
        LinearWeights Linear(int n, int k) => new(RandomParameter(random, 1f / MathF.Sqrt(k), 0, n, k), RandomParameter(random, 0.1f, 0, n));
        LayerNormWeights Norm() => new(RandomParameter(random, 0.1f, 1, width), RandomParameter(random, 0.1f, 0, width), 1e-5f);
        return new VisionEncoderBlock(0, heads, activation, Norm(), Linear(width, width), Linear(width, width), Linear(width, width), Linear(width, width),
            Norm(), Linear(inner, width), Linear(width, inner));
    }

    [Fact]
    public void ClipBlockGradientsMatchFiniteDifferences()
    {
        var random = new Random(3);
        var block = RandomBlock(random, width: 8, inner: 12, heads: 2, VisionActivation.QuickGelu);
        var x = RandomParameter(random, 1f, 0, 2, 3, 8);
        x.Name = "x";
        block.Query.Weight.Name = "q_proj.weight";
        block.Fc1.Weight.Name = "fc1.weight";
        block.Norm1.Weight.Name = "layer_norm1.weight";
        FiniteDifference.Check(() => block.Forward(x), [x, block.Query.Weight, block.Fc1.Weight, block.Norm1.Weight], epsilon: 1e-2f);
    }

    [Fact]
    public void HookSeesTheNormedInputAndItsParametersGetGradients()
    {
        var random = new Random(5);
        var block = RandomBlock(random, width: 8, inner: 12, heads: 2, VisionActivation.GeluTanh);
        var x = RandomParameter(random, 1f, 0, 1, 4, 8);
        var adapter = RandomParameter(random, 0.3f, 0, 8, 8);
        adapter.Name = "adapter";
        Tensor? seen = null;
        int seenIndex = -1;
        AttentionInputHook hook = (index, normed) =>
        {
            seen = normed;
            seenIndex = index;
            return Ops.Add(normed, Ops.Linear(normed, adapter));
        };
        using (Autograd.NoGrad()) block.Forward(x, hook);
        Assert.Equal(0, seenIndex);
        using (Autograd.NoGrad())
            TensorAssert.Close(Ops.LayerNorm(x, block.Norm1.Weight, block.Norm1.Bias, 1e-5f), seen!, 1e-6f, 1e-6f, "hook input");
        FiniteDifference.Check(() => block.Forward(x, hook), [adapter, x], epsilon: 1e-2f);
    }

    [Fact]
    public void TowerHookRunsOncePerBlockInOrder()
    {
        using var model = VisionEncoder.Load(VisionGoldenTests.ModelFolder("clip_vision"));
        var calls = new List<int>();
        model.AttentionInputHook = (index, normed) => { calls.Add(index); return normed; };
        using (Autograd.NoGrad()) model.Forward(Tensor.Zeros(1, 3, 32, 32), keepHiddenStates: false);
        Assert.Equal([0, 1, 2], calls);
    }

    [Fact]
    public void TrainableTowerGivesEveryWeightAGradient()
    {
        using var model = VisionEncoder.Load(VisionGoldenTests.ModelFolder("siglip_head"), trainable: true);
        var pixels = Tensor.Full(0.5f, 1, 3, 32, 32);
        var output = model.Forward(pixels, keepHiddenStates: false);
        Ops.Sum(Ops.Mul(output.Pooled!, output.Pooled!)).Backward();
        Assert.All(model.Parameters, p => Assert.True(p.Grad is not null, $"{p.Name} has no gradient"));
    }
}
