namespace Graft.Import;

/// <summary>An author's checkpoint that cannot be imported as it is, with the file and the field or tensor at fault.</summary>
public sealed class ImportException(string file, string problem, string? field = null)
    : Exception($"{file}{(field is null ? "" : $", {field}")}: {problem}")
{
    public string File { get; } = file;
    public string Problem { get; } = problem;
    public string? Field { get; } = field;
}
