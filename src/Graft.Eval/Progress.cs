namespace Graft.Eval;

/// <summary>
/// A one-line text progress bar ("mmlu [#####-----] 50/100"), redrawn with a carriage return only when the
/// filled width changes or the count ends, so a long run writes a few hundred bytes, not one line per item.
/// </summary>
public sealed class ProgressBar(TextWriter? writer, int width = 30)
{
    private string _label = "";
    private int _total;
    private int _drawn = -1;

    public void Start(string label, int total)
    {
        _label = label;
        _total = total;
        _drawn = -1;
        Report(0);
    }

    public void Report(int done)
    {
        if (writer is null) return;
        int filled = _total == 0 ? width : (int)((long)done * width / _total);
        if (filled == _drawn && done != _total) return;
        _drawn = filled;
        writer.Write($"\r{_label} [{new string('#', filled)}{new string('-', width - filled)}] {done}/{_total}");
        if (done == _total) writer.WriteLine();
        writer.Flush();
    }
}
