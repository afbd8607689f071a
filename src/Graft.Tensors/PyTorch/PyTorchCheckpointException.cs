namespace Graft.Tensors.PyTorch;

/// <summary>A PyTorch checkpoint file that cannot be read or trusted, with where the problem is.</summary>
public sealed class PyTorchCheckpointException : Exception
{
    public PyTorchCheckpointException(string file, string problem, string? tensorName = null, long? byteOffset = null, Exception? inner = null)
        : base($"{file}{(tensorName is null ? "" : $", tensor '{tensorName}'")}{(byteOffset is null ? "" : $", byte {byteOffset}")}: {problem}", inner)
    {
        File = file;
        Problem = problem;
        TensorName = tensorName;
        ByteOffset = byteOffset;
    }

    public string File { get; }
    public string Problem { get; }
    public string? TensorName { get; }

    /// <summary>Offset from the start of the file, when the problem has a place.</summary>
    public long? ByteOffset { get; }
}
