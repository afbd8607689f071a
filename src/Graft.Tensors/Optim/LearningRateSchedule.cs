namespace Graft.Tensors.Optim;

/// <summary>Learning-rate schedules as functions of the optimiser step index.</summary>
public static class LearningRateSchedule
{
    /// <summary>
    /// Linear warm-up from 0 to <paramref name="baseLr"/>, then a half cosine down to <paramref name="minLr"/>, as
    /// transformers' get_cosine_schedule_with_warmup (with min_lr as its ..._with_min_lr variant). The argument
    /// is the number of optimiser steps already taken: call it with 0 for the first Step(), so with warm-up the
    /// first update has lr 0, exactly as LambdaLR does. Steps past <paramref name="totalSteps"/> stay at minLr
    /// (transformers would climb the cosine back up).
    /// </summary>
    public static Func<int, float> WarmupCosine(float baseLr, int warmupSteps, int totalSteps, float minLr = 0f)
    {
        if (!(baseLr >= 0f)) throw new ArgumentOutOfRangeException(nameof(baseLr), $"base learning rate must be >= 0, got {baseLr}");
        if (!(minLr >= 0f && minLr <= baseLr)) throw new ArgumentOutOfRangeException(nameof(minLr), $"minimum learning rate must be in [0, {baseLr}], got {minLr}");
        if (warmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(warmupSteps), $"warm-up steps must be >= 0, got {warmupSteps}");
        if (totalSteps < warmupSteps) throw new ArgumentOutOfRangeException(nameof(totalSteps), $"total steps {totalSteps} are fewer than the warm-up steps {warmupSteps}");
        return step =>
        {
            if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), $"step must be >= 0, got {step}");
            if (step < warmupSteps) return (float)((double)baseLr * step / Math.Max(1, warmupSteps));
            double progress = Math.Min(1.0, (double)(step - warmupSteps) / Math.Max(1, totalSteps - warmupSteps));
            double cosine = 0.5 * (1.0 + Math.Cos(Math.PI * progress));
            return (float)(minLr + ((double)baseLr - minLr) * cosine);
        };
    }
}
