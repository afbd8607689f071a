using Graft.Data;
using Graft.Demo;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Vision;
using Graft.Tensors;
using Graft.Tests.Models;
using Graft.Tests.Support;
using Graft.Training;

namespace Graft.Tests.Training;

/// <summary>The batched training forward, packing, the shared loop, language-model pre-training and the vision tower's pre-training.</summary>
public sealed class PretrainingTests
{
    [Fact]
    public void Batched_forward_gives_each_sequence_its_own_logits()
    {
        var config = CheckpointWriterTests.Qwen2Config();
        var model = DecoderModel.FromWeights(config, DecoderWeights.CreateRandom(config, seed: 4, initializerRange: 0.2f));
        int[] first = [3, 14, 15, 9, 26, 5], second = [27, 18, 28, 18, 28, 4];
        var batched = model.ForwardBatch([.. first, .. second], batch: 2).ToArray();
        int vocab = config.VocabSize;
        TensorAssert.Close(model.Forward(first), Tensor.FromArray(batched[..(6 * vocab)], 6, vocab), 1e-5f, 1e-5f, "first sequence");
        TensorAssert.Close(model.Forward(second), Tensor.FromArray(batched[(6 * vocab)..], 6, vocab), 1e-5f, 1e-5f, "second sequence");
        Assert.Throws<ArgumentException>(() => model.ForwardBatch([1, 2, 3], batch: 2));
    }

    [Fact]
    public void Batched_forward_gradients_match_finite_differences()
    {
        var config = CheckpointWriterTests.Qwen2Config() with { NumLayers = 1 };
        var weights = DecoderWeights.CreateRandom(config, seed: 2, initializerRange: 0.3f);
        var model = DecoderModel.FromWeights(config, weights);
        int[] ids = [1, 7, 3, 9, 2, 8], targets = [7, 3, 9, 0, 8, 5];
        FiniteDifference.Check(() => Ops.CrossEntropy(model.ForwardBatch(ids, 2), targets),
            [weights.Layers[0].Query, weights.Layers[0].KeyBias!, weights.Layers[0].Down, weights.Embedding], epsilon: 1e-2f);
    }

    [Fact]
    public void Packed_rows_continue_the_stream_with_shifted_targets_and_separators()
    {
        int next = 0;
        var documents = new[] { new[] { 1, 2, 3 }, [4, 5], [6, 7, 8, 9] };
        var packed = new PackedSequences(() => documents[next++ % documents.Length], separator: 0);
        var (inputs, targets) = packed.NextBatch(batch: 2, length: 4);
        Assert.Equal([1, 2, 3, 0, 4, 5, 0, 6], inputs);
        Assert.Equal([2, 3, 0, 4, 5, 0, 6, 7], targets);
        var (moreInputs, _) = packed.NextBatch(batch: 1, length: 3);
        Assert.Equal([7, 8, 9], moreInputs);
        Assert.Equal(3, packed.Documents);
    }

    [Fact]
    public void Pre_training_learns_a_repeated_text_and_is_deterministic()
    {
        PretrainingResult Train()
        {
            var config = CheckpointWriterTests.Qwen2Config() with { NumLayers = 1 };
            var model = DecoderModel.FromWeights(config, DecoderWeights.CreateRandom(config, seed: 1));
            var packed = new PackedSequences(() => [10, 20, 30, 40, 50, 60, 70], separator: 3);
            return LanguageModelPretraining.Run(model, packed, new PretrainingSchedule { Steps = 60, LearningRate = 1e-2f, MinLearningRate = 1e-3f, WarmupSteps = 5 },
                batchSize: 2, sequenceLength: 16);
        }
        var first = Train();
        Assert.True(first.Losses[0] > 4f, $"an untrained model should be near ln(80) = 4.38, got {first.Losses[0]}");
        Assert.True(first.FinalLoss < 0.5f, $"a repeated 8-token cycle should be learned, final loss {first.FinalLoss}");
        Assert.Equal(60 * 2 * 16, first.Items);
        Assert.Equal(first.Losses, Train().Losses);
    }

    [Fact]
    public void Pre_training_refuses_frozen_weights_and_rows_longer_than_the_context()
    {
        using var model = DecoderModel.Load(LlmGolden.ModelFolder("qwen2"));
        var packed = new PackedSequences(() => [1, 2], separator: 0);
        var frozen = Assert.Throws<ArgumentException>(() => LanguageModelPretraining.Run(model, packed, new PretrainingSchedule { Steps = 1, WarmupSteps = 0 }, 1, 8));
        Assert.Contains("ToTrainable", frozen.Message);
        var trainable = DecoderModel.FromWeights(model.Config, model.Weights.ToTrainable());
        var tooLong = Assert.Throws<ArgumentException>(() => LanguageModelPretraining.Run(trainable, packed, new PretrainingSchedule { Steps = 1, WarmupSteps = 0 }, 1, 4096));
        Assert.Contains("context", tooLong.Message);
    }

    [Fact]
    public void Training_loop_reports_progress_and_stops_on_cancellation()
    {
        var weight = Tensor.Parameter([2f], 1);
        weight.Name = "w";
        var reports = new List<PretrainingProgress>();
        var schedule = new PretrainingSchedule { Steps = 20, LearningRate = 0.1f, MinLearningRate = 0.01f, WarmupSteps = 0, WeightDecay = 0, ReportEvery = 8 };
        var result = PretrainingLoop.Run("toy", [("w", weight)], schedule, _ => (Ops.Sum(Ops.Mul(weight, weight)), 1), new ListProgress(reports));
        Assert.Equal([8, 16, 20], reports.Select(r => r.Step));
        Assert.True(Math.Abs(weight.ToArray()[0]) < 1f, $"w should move towards 0, is {weight.ToArray()[0]}");
        Assert.Equal(20, result.Items);

        using var cancel = new CancellationTokenSource();
        int steps = 0;
        Assert.Throws<OperationCanceledException>(() => PretrainingLoop.Run("toy", [("w", weight)], schedule, _ =>
        {
            if (++steps == 3) cancel.Cancel();
            return (Ops.Sum(Ops.Mul(weight, weight)), 1);
        }, cancellationToken: cancel.Token));
        Assert.Equal(3, steps);

        var diverging = Assert.Throws<InvalidOperationException>(() => PretrainingLoop.Run("toy", [("w", weight)], schedule, _ => (Ops.Scale(Ops.Sum(weight), float.NaN), 1)));
        Assert.Contains("step 1", diverging.Message);
    }

    [Fact]
    public void Vision_pre_training_runs_and_measures_the_head_on_held_out_scenes()
    {
        var config = new VisionTowerConfig(VisionTowerKind.Clip, 32, 8, 3, 16, 32, 2, 2, VisionActivation.QuickGelu, 1e-5f);
        var tower = ClipVisionModel.CreateRandom(config, seed: 1);
        var preprocessing = ImageProcessorConfig.Clip() with { ShortestEdge = 32, CropHeight = 32, CropWidth = 32 };
        var before = tower.PatchWeight.ToArray();
        var result = ShapesVisionPretraining.Run(tower, preprocessing, new ShapesWorldOptions { Size = 32, MaxShapes = 2 }, seed: 3,
            new PretrainingSchedule { Steps = 6, LearningRate = 3e-3f, MinLearningRate = 3e-4f, WarmupSteps = 1 }, batchSize: 4, evaluationScenes: 8);
        Assert.Equal(24, result.Training.Items);
        Assert.NotEqual(before, tower.PatchWeight.ToArray());
        foreach (double accuracy in new[] { result.Accuracy.Shape, result.Accuracy.Colour, result.Accuracy.Occupancy, result.Accuracy.Count })
            Assert.InRange(accuracy, 0, 1);
        Assert.Equal(8, result.Accuracy.Scenes);

        var smaller = preprocessing with { ShortestEdge = 24, CropHeight = 24, CropWidth = 24 };
        var wrongSize = Assert.Throws<ArgumentException>(() => ShapesVisionPretraining.Run(tower, smaller, new ShapesWorldOptions { Size = 48 }, 1,
            new PretrainingSchedule { Steps = 1, WarmupSteps = 0 }, 2));
        Assert.Contains("48-pixel", wrongSize.Message);
    }

    private sealed class ListProgress(List<PretrainingProgress> reports) : IProgress<PretrainingProgress>
    {
        public void Report(PretrainingProgress value) => reports.Add(value);
    }
}
