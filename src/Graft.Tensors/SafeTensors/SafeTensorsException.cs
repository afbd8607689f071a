namespace Graft.Tensors.SafeTensors;

/// <summary>A safetensors file (or checkpoint index) that cannot be trusted, with where the problem is.</summary>
public sealed class SafeTensorsException : Exception
{
    public SafeTensorsException(string file, string problem, string? tensorName = null, long? byteOffset = null)
        : this(file, problem, tensorName, byteOffset, inner: null)
    {
    }

    public SafeTensorsException(string file, string problem, string? tensorName, long? byteOffset, Exception? inner)
        : base(Describe(file, problem, tensorName, byteOffset), inner)
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

    private static string Describe(string file, string problem, string? tensorName, long? byteOffset) =>
        $"{file}{(tensorName is null ? "" : $", tensor '{tensorName}'")}{(byteOffset is null ? "" : $", byte {byteOffset}")}: {problem}";
}
