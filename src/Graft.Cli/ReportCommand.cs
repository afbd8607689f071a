using System.CommandLine;
using Graft.Eval;
using Graft.Plugins;

namespace Graft.Cli;

/// <summary>
/// `graft report --model DIR --bench ... --out DIR`: the forgetting report (report.md, report.json, SVG charts).
/// One row for the base (base route) and one per `--plugin` (the base route, and its own route: images, and text
/// when the design acts on text); columns a row has no route for read "n/a". Plug-ins may read different towers (each
/// the one its plugin.json records, or `--vision NAME=DIR`) or none; all are checked before any scoring starts.
/// </summary>
public static class ReportCommand
{
    public static Command Create()
    {
        var options = new EvalCommand.SharedOptions();
        var plugins = new Option<string[]>("--plugin") { Description = "A plug-in: NAME=PATH.graft, or PATH.graft named after its folder; repeat for several (each with its own tower and chat template).", AllowMultipleArgumentsPerToken = false };
        var outFolder = new Option<string>("--out") { Description = "Folder for report.md, report.json and the SVG charts (created if missing).", Required = true };
        var command = new Command("report", "Write a forgetting report: text accuracy via each route, image and interleaved accuracy, parameters, size.");
        options.AddTo(command);
        command.Options.Add(plugins);
        command.Options.Add(outFolder);
        command.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            return EvalCommand.Guarded("report", error, () =>
            {
                var (folder, benches, evalOptions, progress, vision, template) = options.Read(parse, error);
                var named = ServeCommand.ParsePlugins(parse.GetValue(plugins) ?? []);
                var towers = VisionOverrides.Parse(vision, named.Select(p => p.Key).ToList());
                var (run, pluginRuns) = ModelEvaluation.EvaluatePlugins(folder, named, towers, benches, evalOptions, progress, template);
                var entries = new List<ReportEntry> { new("base", 0, FolderBytes(folder, "*.safetensors"), run, null) };
                foreach (var plugin in pluginRuns)
                    entries.Add(new ReportEntry(plugin.Name, plugin.TrainableParameters, FolderBytes(plugin.Folder, "*"), run, plugin.Run));
                foreach (var path in new ForgettingReport(entries).Write(parse.GetValue(outFolder)!)) output.WriteLine($"wrote {path}");
                return 0;
            });
        });
        return command;
    }

    /// <summary>Bytes of the files matching <paramref name="pattern"/> in a folder (weights of a base; all of a plug-in).</summary>
    private static long FolderBytes(string folder, string pattern) =>
        Directory.GetFiles(folder, pattern).Sum(f => new FileInfo(f).Length);
}
