using System.CommandLine;
using Graft.Benchmarking;
using Graft.Models.Generation;

namespace Graft.Cli;

/// <summary>The registry of `graft` sub-commands; each lives in its own file.</summary>
internal static class Commands
{
    public static IEnumerable<Command> All() =>
    [
        DemoCommand.Create(),
        BenchCommand.Create(),
        InspectCommand.Create(),
        LogitsCommand.Create(),
        DataCommand.Create(),
        TokenizeCommand.Create(),
        GenerateCommand.Create(DecoderSequenceModel.Load),
        ChatCommand.Create(DecoderSequenceModel.Load),
        EncodeImageCommand.Create(),
        PluginCommand.Create(),
        EvalCommand.Create(),
        ReportCommand.Create(),
        TrainCommand.Create(),
        ServeCommand.Create(),
        ImportCommand.Create(),
    ];
}
