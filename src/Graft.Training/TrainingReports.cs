using Graft.Plugins;

namespace Graft.Training;

/// <summary>
/// Where a run stands after an optimiser step: the stage, the step within it and overall, the loss of the step (mean
/// cross-entropy over its target tokens), the learning rate of the stage's default group, sequence positions per
/// second over the step, time so far and the estimated time left. <see cref="Checkpoint"/> names the checkpoint written
/// after this step, if any.
/// </summary>
public sealed record TrainingProgress(
    string Stage, int StageIndex, int StageCount, int StageStep, int StageSteps, int Step, int TotalSteps,
    float Loss, float LearningRate, double TokensPerSecond, TimeSpan Elapsed, TimeSpan Eta, string? Checkpoint);

/// <summary>What one stage did: its steps, what it trained, how long it took, the positions it ran, and its first and last losses.</summary>
public sealed record StageSummary(
    string Name, int Steps, IReadOnlyList<string> Parts, long TrainableParameters, double Seconds, long Tokens, long Targets,
    float FirstLoss, float LastLoss)
{
    public double TokensPerSecond => Seconds > 0 ? Tokens / Seconds : 0;
}

/// <summary>
/// A finished run: its folder, the trained plug-in (in memory, bound to the base and vision front end given, and saved
/// as <see cref="PluginFolder"/>), each stage's summary, the totals, and the examples left out or shortened for
/// max_length. <see cref="ResumedFromStep"/> is the checkpoint's step when the run was resumed. In Bridge's full mode
/// <see cref="BaseFolder"/> is the new base the run wrote (RUN/base, a Hugging Face folder) and the saved plug-in is bound
/// to it, while <see cref="Plugin"/> runs on the trained copy in memory; null for a plug-in, which leaves the base as it was.
/// </summary>
public sealed record TrainingResult(
    string RunFolder, string PluginFolder, IPlugin Plugin, IReadOnlyList<StageSummary> Stages, TimeSpan Elapsed, int Steps,
    long Tokens, long Skipped, long Truncated, int? ResumedFromStep, string? BaseFolder = null)
{
    public double TokensPerSecond => Elapsed.TotalSeconds > 0 ? Tokens / Elapsed.TotalSeconds : 0;
}

/// <summary>
/// Training stopped at a step boundary because it was cancelled; the run was saved to <see cref="Checkpoint"/> and
/// continues from there with the same command and --resume.
/// </summary>
public sealed class TrainingInterruptedException(string runFolder, string checkpoint, int step, CancellationToken token)
    : OperationCanceledException($"training stopped after step {step}; saved {checkpoint}; continue with --resume on {runFolder}", token)
{
    public string RunFolder { get; } = runFolder;
    public string Checkpoint { get; } = checkpoint;
    public int Step { get; } = step;
}

/// <summary>A step's loss or gradient norm was not finite: training diverged, and the step was not applied.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);
