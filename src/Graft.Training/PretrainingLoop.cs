using System.Diagnostics;
using Graft.Tensors;
using Graft.Tensors.Optim;

namespace Graft.Training;

/// <summary>The optimiser and schedule of a from-scratch run: AdamW (β1 0.9, β2 0.95), linear warm-up, cosine decay.</summary>
public sealed record PretrainingSchedule
{
    public int Steps { get; init; } = 1000;
    public float LearningRate { get; init; } = 2e-3f;
    public float MinLearningRate { get; init; } = 2e-4f;
    public int WarmupSteps { get; init; } = 50;

    /// <summary>Decoupled weight decay on matrices and embeddings; norms and biases are not decayed.</summary>
    public float WeightDecay { get; init; } = 0.1f;

    /// <summary>The global gradient norm is clipped to this.</summary>
    public float GradientClip { get; init; } = 1f;

    /// <summary>Progress is reported every this many steps (and at the last).</summary>
    public int ReportEvery { get; init; } = 10;

    public void Validate()
    {
        if (Steps <= 0) throw new ArgumentException($"steps must be positive, got {Steps}");
        if (WarmupSteps < 0 || WarmupSteps > Steps) throw new ArgumentException($"warm-up steps must be in [0, {Steps}], got {WarmupSteps}");
        if (!(LearningRate > 0) || !(MinLearningRate >= 0) || MinLearningRate > LearningRate)
            throw new ArgumentException($"learning rates must satisfy 0 <= min ({MinLearningRate}) <= max ({LearningRate}), max > 0");
        if (!(WeightDecay >= 0)) throw new ArgumentException($"weight decay must be >= 0, got {WeightDecay}");
        if (!(GradientClip > 0)) throw new ArgumentException($"gradient clip must be positive, got {GradientClip}");
        if (ReportEvery <= 0) throw new ArgumentException($"report interval must be positive, got {ReportEvery}");
    }
}

/// <summary>Where a run is: step (1-based), the step's loss, the mean loss since the last report, items (tokens, images) seen, time.</summary>
public sealed record PretrainingProgress(string Stage, int Step, int Steps, float Loss, float MeanLoss, float LearningRate, long Items, TimeSpan Elapsed)
{
    public double ItemsPerSecond => Elapsed.TotalSeconds > 0 ? Items / Elapsed.TotalSeconds : 0;
    public TimeSpan Remaining => Step > 0 ? Elapsed * ((double)(Steps - Step) / Step) : TimeSpan.Zero;
}

/// <summary>What a finished run did; <see cref="Losses"/> holds every step's loss.</summary>
public sealed record PretrainingResult(int Steps, long Items, IReadOnlyList<float> Losses, TimeSpan Elapsed)
{
    /// <summary>The mean loss of the last tenth of the steps (at least one).</summary>
    public float FinalLoss => Losses.Skip(Losses.Count - Math.Max(1, Losses.Count / 10)).Average();
}

/// <summary>
/// The loop every from-scratch run shares: per step, set the scheduled rate, compute the loss, backward, clip the
/// global gradient norm, AdamW, clear gradients, report. Cancellation stops at a step boundary with
/// <see cref="OperationCanceledException"/>; a non-finite loss stops the run with an error naming the step.
/// </summary>
public static class PretrainingLoop
{
    /// <param name="parameters">Every trainable tensor with its name (names decide weight decay: see <see cref="ParameterGroup.SkipsDecayByDefault"/>).</param>
    /// <param name="step">Given the step index, the scalar loss to minimise and how many items (tokens, images) it covered.</param>
    public static PretrainingResult Run(string stage, IReadOnlyList<(string Name, Tensor Parameter)> parameters, PretrainingSchedule schedule,
        Func<int, (Tensor Loss, int Items)> step, IProgress<PretrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(schedule);
        ArgumentNullException.ThrowIfNull(step);
        schedule.Validate();
        var optimizer = new AdamW(ParameterGroup.SplitByDecay(parameters, schedule.LearningRate, schedule.WeightDecay), beta2: 0.95f);
        var rateAt = LearningRateSchedule.WarmupCosine(schedule.LearningRate, schedule.WarmupSteps, schedule.Steps, schedule.MinLearningRate);
        var tensors = parameters.Select(p => p.Parameter).ToList();
        var losses = new List<float>(schedule.Steps);
        long items = 0;
        double sinceReport = 0;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < schedule.Steps; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            float rate = rateAt(i);
            foreach (var group in optimizer.Groups) group.LearningRate = rate;
            var (loss, count) = step(i);
            loss.Backward();
            float value = loss.Span[0];
            if (!float.IsFinite(value)) throw new InvalidOperationException($"{stage}: training diverged at step {i + 1}: loss {value}");
            GradientClipping.ClipByGlobalNorm(tensors, schedule.GradientClip);
            optimizer.Step();
            optimizer.ZeroGrad();
            losses.Add(value);
            items += count;
            sinceReport += value;
            int done = i + 1;
            if (done % schedule.ReportEvery == 0 || done == schedule.Steps)
            {
                int reported = done % schedule.ReportEvery == 0 ? schedule.ReportEvery : done % schedule.ReportEvery;
                progress?.Report(new PretrainingProgress(stage, done, schedule.Steps, value, (float)(sinceReport / reported), rate, items, clock.Elapsed));
                sinceReport = 0;
            }
        }
        return new PretrainingResult(schedule.Steps, items, losses, clock.Elapsed);
    }
}
