namespace Graft.Training;

/// <summary>A recipe that cannot be used, naming the file (or preset) and the JSON field at fault.</summary>
public sealed class RecipeException(string file, string field, string message)
    : Exception($"{file}: {(field.Length == 0 ? "" : field + ": ")}{message}")
{
    public string File { get; } = file;

    /// <summary>The JSON path of the field ("stages[1].learning_rate"), empty for the document as a whole.</summary>
    public string Field { get; } = field;
}
