using System.Globalization;

namespace Graft.Eval;

/// <summary>
/// Progress of a benchmark's items on stderr. Interactive (a terminal): one line redrawn in place, at most every 0.1 s,
/// with the bar, items done of total, the rate and the time left ("mmlu [#####-----] 100/200  16.2/s  ETA 0:06"), and
/// the total time once done. Redirected: nothing while it runs and one plain line when it ends, so a log gets the
/// outcome without control characters.
/// </summary>
public sealed class ProgressBar
{
    private static readonly TimeSpan RedrawInterval = TimeSpan.FromMilliseconds(100);

    private readonly TextWriter _writer;
    private readonly bool _interactive;
    private readonly int _width;
    private readonly TimeProvider _time;
    private string _label = "";
    private int _total;
    private long _started;
    private TimeSpan _drawnAt;
    private int _drawnLength;

    /// <param name="interactive">Whether <paramref name="writer"/> is a terminal (redraw in place) or a file or pipe (one line at the end).</param>
    /// <param name="time">The clock (the system's by default).</param>
    public ProgressBar(TextWriter writer, bool interactive, int width = 30, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        _writer = writer;
        _interactive = interactive;
        _width = width;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>A bar for stderr: interactive unless stderr is redirected.</summary>
    public static ProgressBar ForStandardError(TextWriter error) =>
        new(error, interactive: ReferenceEquals(error, Console.Error) && !Console.IsErrorRedirected);

    public void Start(string label, int total)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(total);
        _label = label;
        _total = total;
        _started = _time.GetTimestamp();
        _drawnLength = 0;
        if (_interactive) Draw(0, TimeSpan.Zero);
        if (total == 0) Report(0);
    }

    /// <summary><paramref name="done"/> of the items have finished.</summary>
    public void Report(int done)
    {
        var elapsed = _time.GetElapsedTime(_started);
        if (done >= _total)
        {
            if (_interactive)
            {
                Draw(_total, elapsed);
                _writer.WriteLine();
            }
            else _writer.WriteLine($"{_label}: {_total}/{_total} in {Seconds(elapsed)} ({Rate(_total, elapsed)}/s)");
            _writer.Flush();
            return;
        }
        if (_interactive && elapsed - _drawnAt >= RedrawInterval) Draw(done, elapsed);
    }

    private void Draw(int done, TimeSpan elapsed)
    {
        int filled = _total == 0 ? _width : (int)((long)done * _width / _total);
        string tail = done == _total ? $"  {Rate(done, elapsed)}/s  in {Seconds(elapsed)}"
            : done == 0 ? "" : $"  {Rate(done, elapsed)}/s  ETA {Clock(elapsed * ((double)(_total - done) / done))}";
        string line = $"{_label} [{new string('#', filled)}{new string('-', _width - filled)}] {done}/{_total}{tail}";
        // Spaces over what a longer line drew before, so nothing of it is left behind.
        _writer.Write("\r" + line.PadRight(_drawnLength));
        _writer.Flush();
        _drawnLength = line.Length;
        _drawnAt = elapsed;
    }

    private static string Rate(int done, TimeSpan elapsed) =>
        (done / Math.Max(elapsed.TotalSeconds, 1e-3)).ToString("0.0", CultureInfo.InvariantCulture);

    private static string Seconds(TimeSpan elapsed) => elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture) + " s";

    private static string Clock(TimeSpan left) =>
        left.TotalHours >= 1 ? $"{(int)left.TotalHours}:{left.Minutes:00}:{left.Seconds:00}" : $"{left.Minutes}:{left.Seconds:00}";
}
