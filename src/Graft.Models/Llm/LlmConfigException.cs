namespace Graft.Models.Llm;

/// <summary>A checkpoint folder that cannot be loaded as it is, with the file and the field or tensor at fault.</summary>
public sealed class LlmConfigException(string file, string problem, string? field = null, string? tensor = null)
    : Exception(Describe(file, problem, field, tensor))
{
    public string File { get; } = file;
    public string Problem { get; } = problem;
    public string? Field { get; } = field;
    public string? Tensor { get; } = tensor;

    private static string Describe(string file, string problem, string? field, string? tensor) =>
        $"{file}{(field is null ? "" : $", field '{field}'")}{(tensor is null ? "" : $", tensor '{tensor}'")}: {problem}";
}
