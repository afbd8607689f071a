namespace Graft.Models.Vision;

/// <summary>
/// A vision checkpoint folder that cannot be used: a missing or malformed config field, or a tensor that is
/// missing or has the wrong shape or type. <see cref="Where"/> names the field (e.g. <c>vision_config.hidden_size</c>)
/// or the tensor.
/// </summary>
public sealed class VisionModelException(string file, string where, string problem, Exception? inner = null)
    : Exception($"{file}: {where}: {problem}", inner)
{
    public string File { get; } = file;
    public string Where { get; } = where;
    public string Problem { get; } = problem;
}
