using System.Diagnostics;
using System.Threading.Channels;
using Graft.Models.Generation;
using Graft.Plugins;

namespace Graft.Serving;

/// <summary>
/// One request in the engine, as its caller follows it: <see cref="Started"/> once its first token is chosen (or the
/// reason it never will be), the text <see cref="Pieces"/> as they come, and the <see cref="Result"/>. A failure
/// (<see cref="TimeoutException"/>, <see cref="ServerBusyException"/>
/// at shutdown, <see cref="OperationCanceledException"/> when the caller cancelled, or a server error) ends all three.
/// </summary>
public sealed class ChatJob
{
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<GenerationResult> _result = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Channel<string> _pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly CancellationToken _cancellation;
    private readonly long _arrival;
    private long _lastToken;
    private CancellationTokenRegistration _registration;

    /// <param name="arrival">When the request arrived (<see cref="Stopwatch.GetTimestamp"/>): its time limit counts from there.</param>
    internal ChatJob(string model, PluginRequest request, SamplingOptions sampling, int? maxTokens, long arrival, CancellationToken cancellation)
    {
        Model = model;
        Request = request;
        _arrival = arrival;
        Sampling = sampling;
        MaxTokens = maxTokens;
        _cancellation = cancellation;
        Id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        // Nobody may await a failed job (a client that went away): its exceptions are observed here.
        _started.Task.ContinueWith(t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously);
        _result.Task.ContinueWith(t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously);
    }

    /// <summary>The completion's id ("chatcmpl-...").</summary>
    public string Id { get; }

    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;

    /// <summary>The model id the request named.</summary>
    public string Model { get; }

    /// <summary>Prompt tokens (image positions included), known once started.</summary>
    public int PromptTokens { get; private set; }

    public Task Started => _started.Task;
    public ChannelReader<string> Pieces => _pieces.Reader;
    public Task<GenerationResult> Result => _result.Task;

    /// <summary>The prepared prompt (images already encoded), ready for its prefill.</summary>
    internal PluginRequest Request { get; }
    internal SamplingOptions Sampling { get; }
    internal int? MaxTokens { get; }
    internal LinkedListNode<ChatJob>? Node { get; set; }
    internal bool IsCancelled => _cancellation.IsCancellationRequested;
    internal TimeSpan SinceArrival => Stopwatch.GetElapsedTime(_arrival);

    internal bool IsExpired(TimeSpan limit) => SinceArrival > limit;

    /// <summary>Why the request ends early: the caller cancelled it, or it ran out of time.</summary>
    internal Exception CancellationReason(TimeSpan limit) => IsCancelled
        ? new OperationCanceledException("the client cancelled the request", _cancellation)
        : new TimeoutException($"the request took longer than the server's limit of {limit.TotalSeconds:0.###} s");

    internal void OnCancelled(Action cancelled) => _registration = _cancellation.Register(cancelled);

    /// <summary>The time since the last token (or the first), and a new mark.</summary>
    internal TimeSpan SinceLastToken()
    {
        long now = Stopwatch.GetTimestamp();
        var elapsed = Stopwatch.GetElapsedTime(_lastToken, now);
        _lastToken = now;
        return elapsed;
    }

    internal void Start(int promptTokens)
    {
        PromptTokens = promptTokens;
        _lastToken = Stopwatch.GetTimestamp();
        _started.TrySetResult();
    }

    internal void Emit(string piece)
    {
        if (piece.Length > 0) _pieces.Writer.TryWrite(piece);
    }

    internal void Complete(GenerationResult result)
    {
        _registration.Unregister();
        _pieces.Writer.TryComplete();
        _result.TrySetResult(result);
    }

    internal void Fail(Exception reason)
    {
        _registration.Unregister();
        _started.TrySetException(reason);
        _pieces.Writer.TryComplete(reason);
        _result.TrySetException(reason);
    }
}
