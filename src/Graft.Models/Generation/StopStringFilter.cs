namespace Graft.Models.Generation;

/// <summary>
/// Streams text while watching for stop strings that may span pieces: a tail that could still grow into a
/// stop string is held back until it either completes one (the text before it is released and the rest
/// dropped) or cannot (it is released).
/// </summary>
internal sealed class StopStringFilter(IReadOnlyList<string> stopStrings)
{
    private string _pending = "";

    public bool Stopped { get; private set; }

    /// <summary>Adds decoded text and returns what is now safe to emit.</summary>
    public string Push(string text)
    {
        if (Stopped || text.Length == 0) return "";
        if (stopStrings.Count == 0) return text;
        _pending += text;
        int stopAt = -1;
        foreach (var stop in stopStrings)
        {
            int at = _pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (stopAt < 0 || at < stopAt)) stopAt = at;
        }
        if (stopAt >= 0)
        {
            Stopped = true;
            var before = _pending[..stopAt];
            _pending = "";
            return before;
        }
        int hold = 0;
        foreach (var stop in stopStrings) hold = Math.Max(hold, LongestSuffixThatStarts(_pending, stop));
        var ready = _pending[..^hold];
        _pending = _pending[^hold..];
        return ready;
    }

    /// <summary>Releases held-back text at the end of the stream.</summary>
    public string Flush()
    {
        var rest = Stopped ? "" : _pending;
        _pending = "";
        return rest;
    }

    /// <summary>The length of the longest suffix of <paramref name="text"/> that is a proper prefix of <paramref name="stop"/>.</summary>
    private static int LongestSuffixThatStarts(string text, string stop)
    {
        for (int length = Math.Min(text.Length, stop.Length - 1); length > 0; length--)
            if (string.CompareOrdinal(text, text.Length - length, stop, 0, length) == 0) return length;
        return 0;
    }
}
