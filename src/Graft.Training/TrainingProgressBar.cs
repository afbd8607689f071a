using System.Globalization;

namespace Graft.Training;

/// <summary>
/// Training progress on stderr: one line redrawn in place (stage, step/total, loss, positions/s, ETA) when it is a
/// terminal; otherwise a plain line at each stage's start and end, after each checkpoint and at most every 10 seconds.
/// </summary>
public sealed class TrainingProgressBar(TextWriter writer, bool live) : IProgress<TrainingProgress>
{
    private const int Width = 24;
    private int _stage = -1;
    private DateTime _lastLine = DateTime.MinValue;
    private bool _open;

    public void Report(TrainingProgress p)
    {
        string text = string.Create(CultureInfo.InvariantCulture,
            $"{p.Stage} ({p.StageIndex + 1}/{p.StageCount}) step {p.StageStep}/{p.StageSteps}  loss {p.Loss:F4}  {p.TokensPerSecond:N0} pos/s  elapsed {Clock(p.Elapsed)}  ETA {Clock(p.Eta)}");
        if (live)
        {
            int filled = p.StageSteps == 0 ? Width : (int)((long)p.StageStep * Width / p.StageSteps);
            writer.Write($"\r[{new string('#', filled)}{new string('-', Width - filled)}] {text}\u001b[K");
            _open = true;
            if (p.StageStep == p.StageSteps) EndLine();
            if (p.Checkpoint is not null) Line($"saved {p.Checkpoint}");
            writer.Flush();
            return;
        }
        bool due = p.StageIndex != _stage || p.StageStep == p.StageSteps || p.Checkpoint is not null || DateTime.UtcNow - _lastLine > TimeSpan.FromSeconds(10);
        _stage = p.StageIndex;
        if (!due) return;
        _lastLine = DateTime.UtcNow;
        writer.WriteLine(p.Checkpoint is null ? text : $"{text}  saved {p.Checkpoint}");
    }

    public void Finish() => EndLine();

    private void Line(string text)
    {
        EndLine();
        writer.WriteLine(text);
    }

    private void EndLine()
    {
        if (!_open) return;
        writer.WriteLine();
        _open = false;
    }

    private static string Clock(TimeSpan t) => t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t:mm\\:ss}" : t.ToString("mm\\:ss", CultureInfo.InvariantCulture);
}
