using Graft.Models.Imaging;

namespace Graft.Serving;

/// <summary>The limits and defaults of one serving engine (and the server around it).</summary>
public sealed record ServingOptions
{
    /// <summary>The base model's id in /v1/models and requests; its folder's name when not given.</summary>
    public string? Name { get; init; }

    /// <summary>Requests waiting for a place in the running batch; one more is refused (HTTP 429).</summary>
    public int MaxQueue { get; init; } = 64;

    /// <summary>Sequences decoding together in one batched step.</summary>
    public int MaxBatch { get; init; } = 8;

    /// <summary>The longest a request may take from arrival to its last token.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Tokens one request holds, prompt (image positions included) and completion together; capped at the model's own limit.</summary>
    public int ContextLength { get; init; } = 4096;

    /// <summary>Completion tokens when a request names no limit (capped by what the context leaves).</summary>
    public int DefaultMaxTokens { get; init; } = 1024;

    /// <summary>Whether image URLs may name files on the server's disk (file:// or an absolute path).</summary>
    public bool AllowLocalFiles { get; init; }

    /// <summary>Encoded bytes and pixels an image may have, checked from its header before it is decoded.</summary>
    public ImageLimits ImageLimits { get; init; } = new() { MaxFileBytes = 20L << 20, MaxPixels = 16L << 20 };

    /// <summary>Images one request may carry, counted while it is read (before any is decoded).</summary>
    public int MaxImagesPerRequest { get; init; } = 16;

    /// <summary>Pixels (width x height, from each header) of all of one request's images together, checked before any is decoded.</summary>
    public long MaxRequestImagePixels { get; init; } = 32L << 20;

    /// <summary>Encoded bytes of all of one request's images together.</summary>
    public long MaxRequestImageBytes { get; init; } = 32L << 20;

    /// <summary>Requests whose images are decoded and encoded at the same time (the others wait, within their time limit); half the cores by default.</summary>
    public int ImageWorkers { get; init; } = Math.Max(1, Environment.ProcessorCount / 2);

    /// <summary>
    /// The slowest a request body may arrive, in bytes per second, after <see cref="MinRequestBodyGrace"/> (Kestrel's
    /// MinRequestBodyDataRate): a slower client gets 408 and its connection closes. 0 turns the check off.
    /// </summary>
    public double MinRequestBodyBytesPerSecond { get; init; } = 240;

    /// <summary>How long a body may arrive more slowly than <see cref="MinRequestBodyBytesPerSecond"/> before it is refused (more than 1 s).</summary>
    public TimeSpan MinRequestBodyGrace { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The largest request body the server reads.</summary>
    public long MaxRequestBytes { get; init; } = 64L << 20;

    /// <summary>On shutdown, how long running requests may go on before they are cancelled.</summary>
    public TimeSpan ShutdownGrace { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid option.</summary>
    public void Validate()
    {
        if (Name is { Length: 0 } || (Name is not null && (Name.Contains(ChatEngine.PluginSeparator) || Name.Any(char.IsWhiteSpace))))
            throw new ArgumentException($"--name '{Name}' must be non-empty, without spaces or '{ChatEngine.PluginSeparator}'");
        if (MaxQueue < 1) throw new ArgumentException($"--max-queue must be >= 1, got {MaxQueue}");
        if (MaxBatch < 1) throw new ArgumentException($"--max-batch must be >= 1, got {MaxBatch}");
        if (RequestTimeout <= TimeSpan.Zero) throw new ArgumentException($"--request-timeout must be positive, got {RequestTimeout.TotalSeconds} s");
        if (ContextLength < 2) throw new ArgumentException($"--context-length must be >= 2, got {ContextLength}");
        if (DefaultMaxTokens < 1) throw new ArgumentException($"--default-max-tokens must be >= 1, got {DefaultMaxTokens}");
        if (ImageLimits.MaxFileBytes < 1 || ImageLimits.MaxPixels < 1) throw new ArgumentException("image limits must be positive");
        if (MaxImagesPerRequest < 0) throw new ArgumentException($"--max-images must be >= 0, got {MaxImagesPerRequest}");
        if (MaxRequestImagePixels < 1) throw new ArgumentException($"--max-request-image-pixels must be positive, got {MaxRequestImagePixels}");
        if (MaxRequestImageBytes < 1) throw new ArgumentException($"--max-request-image-bytes must be positive, got {MaxRequestImageBytes}");
        if (ImageWorkers < 1) throw new ArgumentException($"--image-workers must be >= 1, got {ImageWorkers}");
        if (!(MinRequestBodyBytesPerSecond >= 0) || double.IsInfinity(MinRequestBodyBytesPerSecond))
            throw new ArgumentException($"--min-body-rate must be a number of bytes per second >= 0, got {MinRequestBodyBytesPerSecond}");
        if (MinRequestBodyGrace <= TimeSpan.FromSeconds(1)) throw new ArgumentException($"the request body grace period must be more than 1 s, got {MinRequestBodyGrace.TotalSeconds} s");
        if (MaxRequestBytes < 1024 || MaxRequestBytes > Array.MaxLength)
            throw new ArgumentException($"--max-request-bytes must be between 1024 and {Array.MaxLength} (a body is held in one array), got {MaxRequestBytes}");
        if (ShutdownGrace < TimeSpan.Zero) throw new ArgumentException("the shutdown grace must not be negative");
    }
}
