using System.CommandLine;
using Graft.Data;
using Graft.Eval;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Tensors.SafeTensors;

namespace Graft.Cli;

/// <summary>
/// `graft eval --model DIR [--plugin NAME.graft] [--text-route base|plugin] --bench KIND:PATH [--bench ...]
/// [--limit N] [--json]`: accuracy overall and per category on the base route or through a plug-in, a progress bar
/// on stderr.
/// </summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var options = new SharedOptions();
        var json = new Option<bool>("--json") { Description = "Print the results as JSON instead of a table." };
        var plugin = new Option<string?>("--plugin") { Description = "A plug-in folder (NAME.graft): images go through it; without one, image items are skipped and counted." };
        var answers = new Option<string?>("--answers") { Description = "Write every generated answer to this JSON Lines file: benchmark, item, the answer as generated, the expected answer, whether it counted." };
        var textRoute = new Option<TextRoute>("--text-route") { Description = "Where text-only requests go with a plug-in: base (Graft's default) or plugin (MMA/WINGS as their authors run them).", DefaultValueFactory = _ => TextRoute.Base };
        var command = new Command("eval", "Evaluate a model on benchmarks: mmlu:PATH, scienceqa:PATH, shapes:PATH, llava:FILE, iit:TEXTSET,IMAGESET.");
        options.AddTo(command);
        command.Options.Add(json);
        command.Options.Add(plugin);
        command.Options.Add(textRoute);
        command.Options.Add(answers);
        command.SetAction(parse =>
        {
            var output = parse.InvocationConfiguration.Output;
            var error = parse.InvocationConfiguration.Error;
            return Guarded("eval", error, () =>
            {
                var (folder, benches, evalOptions, progress, vision, template) = options.Read(parse, error);
                var pluginFolder = parse.GetValue(plugin);
                var route = parse.GetValue(textRoute);
                if (pluginFolder is null && route == TextRoute.Plugin) throw new ArgumentException("--text-route plugin needs --plugin");
                if (pluginFolder is null && vision.Length > 0) throw new ArgumentException("--vision needs a --plugin that uses it");
                if (vision.Length > 1) throw new ArgumentException("--vision: eval takes one plug-in, so one tower folder");
                var run = pluginFolder is null ? ModelEvaluation.Evaluate(folder, benches, evalOptions, progress, template)
                    : ModelEvaluation.EvaluatePlugin(folder, pluginFolder, vision.FirstOrDefault(), route, benches, evalOptions, progress, template).Run;
                output.Write(parse.GetValue(json) ? run.ToJson() : run.Format());
                if (parse.GetValue(answers) is { } answersFile) WriteAnswers(answersFile, run);
                return 0;
            });
        });
        return command;
    }

    /// <summary>One JSON object per generated answer, benchmark by benchmark, written whole or not at all.</summary>
    private static void WriteAnswers(string file, EvalRun run)
    {
        var text = new System.Text.StringBuilder();
        foreach (var result in run.Results)
            foreach (var item in result.Answers)
                text.Append(new System.Text.Json.Nodes.JsonObject
                {
                    ["benchmark"] = result.Name, ["source"] = result.Source, ["id"] = item.Id, ["answer"] = item.Answer,
                    ["expected"] = item.Expected, ["correct"] = item.Correct,
                }.ToJsonString(PluginManifest.JsonOptions)).Append('\n');
        Graft.Tensors.AtomicFile.WriteAllText(file, text.ToString());
    }

    /// <summary>Options `eval` and `report` share, read and checked in one place.</summary>
    internal sealed class SharedOptions
    {
        private readonly Option<string> _model = new("--model") { Description = "A Hugging Face model folder (config.json, weights, tokenizer.json).", Required = true };
        private readonly Option<string[]> _bench = new("--bench") { Description = "KIND:PATH; repeat for several.", Required = true, AllowMultipleArgumentsPerToken = false };
        private readonly Option<int?> _limit = new("--limit") { Description = "At most N items per benchmark (IIT: N dialogues per configuration)." };
        private readonly Option<int> _shots = new("--shots") { Description = "MMLU examples before each question.", DefaultValueFactory = _ => 5 };
        private readonly Option<string> _split = new("--split") { Description = "Split to score (MMLU folder, ScienceQA pid_splits entry).", DefaultValueFactory = _ => "test" };
        private readonly Option<int> _maxNewTokens = new("--max-new-tokens") { Description = "Greedy tokens for generated answers.", DefaultValueFactory = _ => 32 };
        private readonly Option<ulong> _seed = new("--seed") { Description = "Seed of the IIT dialogue assembly.", DefaultValueFactory = _ => 1 };
        private readonly Option<bool> _quiet = new("--quiet") { Description = "No progress bar on stderr." };
        private readonly Option<string[]> _vision = new("--vision") { Description = "A plug-in's CLIP/SigLIP folder instead of the one its plugin.json records (checked against its fingerprint); report: NAME=DIR per plug-in, or DIR for all", AllowMultipleArgumentsPerToken = false };
        private readonly Option<string?> _template = new("--template") { Description = "The chat template conversation benchmarks (shapes, llava) are asked in on the base route, and by plug-ins that record none; default: the checkpoint's" };

        public void AddTo(Command command)
        {
            foreach (var option in (Option[])[_model, _bench, _limit, _shots, _split, _maxNewTokens, _seed, _quiet, _vision, _template]) command.Options.Add(option);
        }

        public (string Folder, List<BenchSpec> Benches, EvalOptions Options, ProgressBar? Progress, string[] Vision, string? Template) Read(ParseResult parse, TextWriter error)
        {
            var benches = parse.GetValue(_bench)!.Select(BenchSpec.Parse).ToList();
            var options = new EvalOptions
            {
                Limit = parse.GetValue(_limit),
                Shots = parse.GetValue(_shots),
                Split = parse.GetValue(_split)!,
                MaxNewTokens = parse.GetValue(_maxNewTokens),
                Seed = parse.GetValue(_seed),
            };
            options.Validate();
            return (parse.GetValue(_model)!, benches, options, parse.GetValue(_quiet) ? null : ProgressBar.ForStandardError(error), parse.GetValue(_vision) ?? [],
                parse.GetValue(_template));
        }
    }

    /// <summary>Bad input (a missing file, a malformed set, a model that does not fit) is one line on stderr and exit code 1.</summary>
    internal static int Guarded(string name, TextWriter error, Func<int> run)
    {
        try
        {
            return run();
        }
        catch (Exception e) when (e is DataFormatException or LlmConfigException or SafeTensorsException or IOException
                                      or ArgumentException or UnauthorizedAccessException or NotSupportedException or System.Text.Json.JsonException
                                      or PluginFormatException or PluginCompatibilityException or ImageFormatException or KeyNotFoundException)
        {
            error.WriteLine($"graft {name}: {e.Message}");
            return 1;
        }
    }
}
