using System.CommandLine;
using Graft.Eval;

namespace Graft.Cli;

/// <summary>
/// `graft report --model DIR --bench ... --out DIR`: the forgetting report (report.md, report.json, SVG charts).
/// Until plug-ins can be loaded it holds the base row; plug-in and image columns read "n/a".
/// </summary>
public static class ReportCommand
{
    public static Command Create()
    {
        var options = new EvalCommand.SharedOptions();
        var outFolder = new Option<string>("--out") { Description = "Folder for report.md, report.json and the SVG charts (created if missing).", Required = true };
        var command = new Command("report", "Write a forgetting report: text accuracy via each route, image and interleaved accuracy, parameters, size.");
        options.AddTo(command);
        command.Options.Add(outFolder);
        command.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            return EvalCommand.Guarded("report", error, () =>
            {
                var (folder, benches, evalOptions, progress) = options.Read(parse, error);
                var run = EvalCommand.Evaluate(folder, benches, evalOptions, progress);
                var entry = new ReportEntry("base", 0, WeightBytes(folder), run, null);
                foreach (var path in new ForgettingReport([entry]).Write(parse.GetValue(outFolder)!)) output.WriteLine($"wrote {path}");
                return 0;
            });
        });
        return command;
    }

    /// <summary>Bytes of the weight files (*.safetensors) in a model folder.</summary>
    private static long WeightBytes(string folder) =>
        Directory.GetFiles(folder, "*.safetensors").Sum(f => new FileInfo(f).Length);
}
