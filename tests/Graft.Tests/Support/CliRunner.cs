using System.CommandLine;

namespace Graft.Tests.Support;

/// <summary>Runs `graft` commands in-process, as the executable parses them, capturing what they print.</summary>
public static class CliRunner
{
    /// <summary>Parses <paramref name="args"/> against a root holding <paramref name="commands"/> and invokes it.</summary>
    public static (int Code, string Output, string Error) Run(IEnumerable<Command> commands, params string[] args)
    {
        var root = new RootCommand();
        foreach (var command in commands) root.Subcommands.Add(command);
        var output = new StringWriter();
        var error = new StringWriter();
        int code = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (code, output.ToString(), error.ToString());
    }
}
