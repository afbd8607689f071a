namespace Graft.Tensors.SafeTensors;

/// <summary>A safetensors file that cannot be trusted, with where the problem is.</summary>
public sealed class SafeTensorsException(string file, string problem, string? tensorName = null, long? byteOffset = null)
    : Exception(Describe(file, problem, tensorName, byteOffset))
{
    public string File { get; } = file;
    public string Problem { get; } = problem;
    public string? TensorName { get; } = tensorName;
    public long? ByteOffset { get; } = byteOffset;

    private static string Describe(string file, string problem, string? tensorName, long? byteOffset) =>
        $"{file}{(tensorName is null ? "" : $", tensor '{tensorName}'")}{(byteOffset is null ? "" : $", byte {byteOffset}")}: {problem}";
}
