namespace Graft.Models.Tokenization;

/// <summary>A tokenizer file that is not valid JSON or lacks something the format requires.</summary>
public sealed class TokenizerFormatException(string file, string field, string problem, Exception? inner = null)
    : FormatException($"{file}: {field}: {problem}", inner)
{
    public string File { get; } = file;
    public string Field { get; } = field;
}

/// <summary>A well-formed tokenizer file that uses a component Graft does not implement (e.g. a WordPiece model).</summary>
public sealed class UnsupportedTokenizerException(string file, string field, string problem)
    : NotSupportedException($"{file}: {field}: {problem}")
{
    public string File { get; } = file;
    public string Field { get; } = field;
}
