namespace Graft.Plugins;

/// <summary>A plug-in file that cannot be read as written: bad JSON, a missing field, a missing or mis-shaped tensor.</summary>
public sealed class PluginFormatException(string file, string problem, string? where = null)
    : Exception($"{file}{(where is null ? "" : $": {where}")}: {problem}")
{
    public string File { get; } = file;
    public string Problem { get; } = problem;

    /// <summary>The field or tensor at fault, when there is one.</summary>
    public string? Where { get; } = where;
}

/// <summary>A well-formed plug-in refused because it was made for another base or another vision front end.</summary>
public sealed class PluginCompatibilityException(string plugin, IReadOnlyList<string> differences)
    : Exception($"plug-in '{plugin}' does not fit: {string.Join("; ", differences)}")
{
    public string Plugin { get; } = plugin;

    /// <summary>Each difference, naming the field and both values.</summary>
    public IReadOnlyList<string> Differences { get; } = differences;
}
