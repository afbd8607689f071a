using System.Globalization;
using System.Text;

namespace Graft.Serving;

/// <summary>
/// What the server counts, rendered in the Prometheus text format (version 0.0.4): HTTP requests by status, completions
/// by outcome, prompt and completion tokens, time to first token and per-token latency histograms, the batch size of
/// each decode step, and the queue depth and running requests at the time of the scrape. Thread-safe.
/// </summary>
public sealed class ServerMetrics
{
    private readonly object _lock = new();
    private readonly SortedDictionary<int, long> _requestsByStatus = [];
    private readonly SortedDictionary<string, long> _completionsByOutcome = new(StringComparer.Ordinal);
    private long _promptTokens, _completionTokens;
    private readonly Histogram _timeToFirstToken = new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]);
    private readonly Histogram _timePerToken = new([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]);
    private readonly Histogram _batchSize = new([1, 2, 4, 8, 16, 32, 64]);

    /// <summary>Requests waiting for a place in the batch and requests running, read at scrape time.</summary>
    internal Func<(int Waiting, int Running)>? Load { get; set; }

    public void CountRequest(int status)
    {
        lock (_lock) _requestsByStatus[status] = _requestsByStatus.GetValueOrDefault(status) + 1;
    }

    /// <summary>A completion ended: "stop", "length", "cancelled", "timeout", "rejected" (the client's mistake found at admission) or "error".</summary>
    public void CountCompletion(string outcome, int promptTokens, int completionTokens)
    {
        lock (_lock)
        {
            _completionsByOutcome[outcome] = _completionsByOutcome.GetValueOrDefault(outcome) + 1;
            _promptTokens += promptTokens;
            _completionTokens += completionTokens;
        }
    }

    public void ObserveTimeToFirstToken(double seconds)
    {
        lock (_lock) _timeToFirstToken.Observe(seconds);
    }

    public void ObserveTimePerToken(double seconds)
    {
        lock (_lock) _timePerToken.Observe(seconds);
    }

    public void ObserveBatchSize(int sequences)
    {
        lock (_lock) _batchSize.Observe(sequences);
    }

    /// <summary>Completions that ended with <paramref name="outcome"/> so far.</summary>
    public long Completions(string outcome)
    {
        lock (_lock) return _completionsByOutcome.GetValueOrDefault(outcome);
    }

    public string Render()
    {
        var text = new StringBuilder();
        lock (_lock)
        {
            Header(text, "graft_requests_total", "counter", "HTTP requests answered, by status code.");
            foreach (var (status, count) in _requestsByStatus) text.Append($"graft_requests_total{{status=\"{status}\"}} {count}\n");
            Header(text, "graft_completions_total", "counter", "Chat completions ended, by outcome (stop, length, cancelled, timeout, rejected, error).");
            foreach (var (outcome, count) in _completionsByOutcome) text.Append($"graft_completions_total{{outcome=\"{outcome}\"}} {count}\n");
            Header(text, "graft_prompt_tokens_total", "counter", "Prompt tokens of admitted requests (image positions included).");
            text.Append($"graft_prompt_tokens_total {_promptTokens}\n");
            Header(text, "graft_completion_tokens_total", "counter", "Tokens generated.");
            text.Append($"graft_completion_tokens_total {_completionTokens}\n");
            _timeToFirstToken.Render(text, "graft_time_to_first_token_seconds", "Seconds from a request's arrival to its first token (queue, prefill and first sampling).");
            _timePerToken.Render(text, "graft_time_per_output_token_seconds", "Seconds between consecutive tokens of one request.");
            _batchSize.Render(text, "graft_batch_size", "Sequences in each batched decode step.");
        }
        var (waiting, running) = Load?.Invoke() ?? (0, 0);
        Header(text, "graft_queue_depth", "gauge", "Requests waiting for a place in the running batch.");
        text.Append($"graft_queue_depth {waiting}\n");
        Header(text, "graft_running_requests", "gauge", "Requests in the running batch.");
        text.Append($"graft_running_requests {running}\n");
        return text.ToString();
    }

    private static void Header(StringBuilder text, string name, string type, string help) =>
        text.Append($"# HELP {name} {help}\n# TYPE {name} {type}\n");

    private sealed class Histogram(double[] bounds)
    {
        private readonly long[] _counts = new long[bounds.Length];
        private long _count;
        private double _sum;

        public void Observe(double value)
        {
            for (int i = 0; i < bounds.Length; i++)
                if (value <= bounds[i]) _counts[i]++;
            _count++;
            _sum += value;
        }

        public void Render(StringBuilder text, string name, string help)
        {
            Header(text, name, "histogram", help);
            for (int i = 0; i < bounds.Length; i++)
                text.Append($"{name}_bucket{{le=\"{bounds[i].ToString(CultureInfo.InvariantCulture)}\"}} {_counts[i]}\n");
            text.Append($"{name}_bucket{{le=\"+Inf\"}} {_count}\n");
            text.Append($"{name}_sum {_sum.ToString("R", CultureInfo.InvariantCulture)}\n");
            text.Append($"{name}_count {_count}\n");
        }
    }
}
