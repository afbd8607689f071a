namespace Graft.Tensors.SafeTensors;

/// <summary>Bounds applied before a header is trusted.</summary>
public sealed record SafeTensorsLimits
{
    public static SafeTensorsLimits Default { get; } = new();

    /// <summary>Largest header (and index.json) accepted, in bytes; the safetensors format caps headers at 100 MB.</summary>
    public long MaxHeaderBytes
    {
        get;
        init => field = value is >= 2 and <= int.MaxValue
            ? value
            : throw new ArgumentOutOfRangeException(nameof(MaxHeaderBytes), value, "must be between 2 and int.MaxValue");
    } = 100_000_000;
}
