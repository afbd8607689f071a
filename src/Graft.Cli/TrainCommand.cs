using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Graft.Data;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Training;

namespace Graft.Cli;

/// <summary>
/// `graft train --recipe FILE|preset:NAME --model DIR [--vision SPEC] --data KIND:PATH... --out RUN_DIR [--resume]
/// [--steps N] [--seed S] [--json]` and `graft train --list-presets`: trains a plug-in by a recipe, with a live progress
/// bar on stderr (plain lines when stderr is redirected); Ctrl-C stops at a step boundary and saves a checkpoint.
/// </summary>
public static class TrainCommand
{
    /// <summary>The exit code of a run stopped by Ctrl-C (saved, resumable), as shells report SIGINT.</summary>
    public const int Interrupted = 130;

    public static Command Create(Func<CancellationToken>? cancellation = null)
    {
        var recipe = new Option<string?>("--recipe") { Description = $"A recipe file, or preset:NAME ({string.Join(", ", Recipe.PresetNames)})" };
        var model = new Option<string?>("--model") { Description = "The base model folder (Hugging Face); only read" };
        var vision = new Option<string?>("--vision") { Description = "The vision front end, as plugin new takes it (required but for visual-experts): a CLIP/SigLIP folder, or patch-pixels:GRID:CELLS (parameter-free, for experiments)" };
        var data = new Option<string[]>("--data") { Description = $"KIND:PATH[:SPLIT][@WEIGHT], repeatable; replaces the recipe's data sources (kinds: {string.Join(", ", DataSourceSpec.Kinds)})" };
        var output = new Option<string?>("--out") { Description = "The run folder: recipe.json, metrics.jsonl, checkpoints/ and NAME.graft" };
        var resume = new Option<bool>("--resume") { Description = "Continue the run in --out from its last checkpoint (the run folder alone is enough: it records its recipe, base and front end)" };
        var steps = new Option<int?>("--steps") { Description = "Total optimiser steps, shared over the stages in proportion to the recipe's" };
        var seed = new Option<int?>("--seed") { Description = "Seed of the initialisation, data order and dropout (default: the recipe's)" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };
        var listPresets = new Option<bool>("--list-presets") { Description = "List the recipes shipped with Graft" };
        var command = new Command("train", "Train a plug-in by a recipe on a frozen base");
        foreach (var option in new Option[] { recipe, model, vision, data, output, resume, steps, seed, json, listPresets }) command.Options.Add(option);
        command.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            if (parse.GetValue(listPresets)) return ListPresets(stdout);
            return Guarded(stderr, () =>
            {
                string runFolder = parse.GetValue(output) ?? throw new ArgumentException("--out is required");
                bool resuming = parse.GetValue(resume);
                // A run resumes from its folder alone: recipe.json holds the recipe as run, run.json the base and front end.
                var run = resuming && Directory.Exists(runFolder) ? RunInfo.Read(runFolder) : null;
                string recipeText = parse.GetValue(recipe)
                    ?? (resuming && File.Exists(Path.Combine(runFolder, PluginTrainer.RecipeFileName)) ? Path.Combine(runFolder, PluginTrainer.RecipeFileName) : null)
                    ?? throw new ArgumentException(resuming
                        ? $"--resume: '{runFolder}' holds no {PluginTrainer.RecipeFileName} of an earlier run to continue"
                        : "--recipe is required (a file or preset:NAME; see --list-presets)");
                string modelFolder = parse.GetValue(model) ?? run?.Base
                    ?? throw new ArgumentException(resuming ? $"--resume: '{runFolder}' does not record its base (no {PluginTrainer.RunFileName}); give --model" : "--model is required");
                string? visionSpec = parse.GetValue(vision) ?? run?.Vision;
                if (parse.GetValue(steps) is <= 0) throw new ArgumentException($"--steps must be positive, got {parse.GetValue(steps)}");
                if (parse.GetValue(seed) is < 0) throw new ArgumentException($"--seed must be zero or more, got {parse.GetValue(seed)}");
                var sources = parse.GetValue(data) is { Length: > 0 } given ? given.Select(s => DataSourceSpec.Parse(s, "--data")).ToList() : null;
                // The recipe as the run recorded it keeps the name it was given then (its origin, which plugin.json records).
                var loaded = parse.GetValue(recipe) is null && run?.RecipeOrigin is { } origin
                    ? Recipe.Parse(File.ReadAllText(recipeText), origin) : Recipe.Load(recipeText);
                var options = new RunOptions(loaded, modelFolder, visionSpec, sources, runFolder,
                    resuming, parse.GetValue(steps), parse.GetValue(seed), parse.GetValue(json));
                return Run(options, stdout, stderr, cancellation?.Invoke() ?? CancelOnCtrlC(stderr));
            });
        });
        return command;
    }

    /// <summary>Everything `graft train` was asked, checked.</summary>
    public sealed record RunOptions(Recipe Recipe, string Model, string? Vision, IReadOnlyList<DataSourceSpec>? Data, string RunFolder,
        bool Resume, int? Steps, int? Seed, bool Json);

    public static int Run(RunOptions options, TextWriter output, TextWriter error, CancellationToken cancellation)
    {
        using var model = DecoderModel.Load(options.Model);
        var vision = new PluginNewSettings(options.Recipe.Design, options.Model, options.Vision, options.RunFolder).CreateFrontEnd();
        using var _ = vision as IDisposable;
        var request = new TrainingRequest
        {
            Recipe = options.Recipe, Base = model, Vision = vision, RunFolder = options.RunFolder, Data = options.Data,
            Steps = options.Steps, Seed = options.Seed, Resume = options.Resume,
        };
        var bar = new TrainingProgressBar(error, live: ReferenceEquals(error, Console.Error) && !Console.IsErrorRedirected);
        TrainingResult result;
        try
        {
            result = PluginTrainer.Train(request, bar, cancellation);
        }
        catch (TrainingInterruptedException stopped)
        {
            bar.Finish();
            error.WriteLine($"stopped after step {stopped.Step}; saved {stopped.Checkpoint}");
            error.WriteLine($"continue with: graft train --out {stopped.RunFolder} --resume");
            return Interrupted;
        }
        bar.Finish();
        if (options.Json) output.WriteLine(ToJson(result, options.Recipe).ToJsonString());
        else Print(result, options.Recipe, output);
        return 0;
    }

    private static int ListPresets(TextWriter output)
    {
        foreach (var name in Recipe.PresetNames)
        {
            var preset = Recipe.Load(Recipe.PresetPrefix + name);
            output.WriteLine($"{Recipe.PresetPrefix}{name}  ({preset.Design}, {preset.Stages.Count} stage{(preset.Stages.Count == 1 ? "" : "s")}: {string.Join(", ", preset.Stages.Select(s => s.Name))})");
            output.WriteLine($"    {preset.Description}");
        }
        return 0;
    }

    private static void Print(TrainingResult result, Recipe recipe, TextWriter output)
    {
        var c = CultureInfo.InvariantCulture;
        output.WriteLine(string.Create(c, $"trained {recipe.Name} ({recipe.Design}) in {result.Elapsed.TotalSeconds:F1} s: {result.Steps} steps, {result.Tokens:N0} positions ({result.TokensPerSecond:N0}/s)"));
        if (result.ResumedFromStep is int from) output.WriteLine($"resumed from step {from}");
        if (result.BaseFolder is not null) output.WriteLine($"new base (the LLM trained with the projector): {result.BaseFolder}");
        foreach (var stage in result.Stages)
            output.WriteLine(string.Create(c, $"  {stage.Name}: {stage.Steps} steps, {string.Join(" + ", stage.Parts)} ({stage.TrainableParameters:N0} parameters), loss {stage.FirstLoss:F4} -> {stage.LastLoss:F4}, {stage.Seconds:F1} s, {stage.TokensPerSecond:N0} positions/s"));
        if (result.Skipped + result.Truncated > 0)
            output.WriteLine($"examples over max_length: {result.Truncated:N0} truncated, {result.Skipped:N0} skipped");
        output.WriteLine($"plug-in: {result.PluginFolder}");
        output.WriteLine($"metrics: {Path.Combine(result.RunFolder, PluginTrainer.MetricsFileName)}");
    }

    private static JsonObject ToJson(TrainingResult result, Recipe recipe) => new()
    {
        ["recipe"] = recipe.Name,
        ["design"] = recipe.Design,
        ["run_folder"] = result.RunFolder,
        ["plugin"] = result.PluginFolder,
        ["steps"] = result.Steps,
        ["seconds"] = Math.Round(result.Elapsed.TotalSeconds, 3),
        ["tokens"] = result.Tokens,
        ["tokens_per_s"] = Math.Round(result.TokensPerSecond, 1),
        ["skipped"] = result.Skipped,
        ["truncated"] = result.Truncated,
        ["resumed_from_step"] = result.ResumedFromStep,
        ["base_folder"] = result.BaseFolder,
        ["trainable_parameters"] = result.Plugin.Parameters.Sum(p => (long)p.Tensor.Length),
        ["stages"] = new JsonArray(result.Stages.Select(s => (JsonNode?)new JsonObject
        {
            ["name"] = s.Name,
            ["steps"] = s.Steps,
            ["parts"] = new JsonArray(s.Parts.Select(p => (JsonNode?)p).ToArray()),
            ["trainable_parameters"] = s.TrainableParameters,
            ["seconds"] = Math.Round(s.Seconds, 3),
            ["tokens"] = s.Tokens,
            ["tokens_per_s"] = Math.Round(s.TokensPerSecond, 1),
            ["first_loss"] = float.IsFinite(s.FirstLoss) ? s.FirstLoss : null,
            ["last_loss"] = float.IsFinite(s.LastLoss) ? s.LastLoss : null,
        }).ToArray()),
    };

    /// <summary>A token cancelled by the first Ctrl-C (the run saves and stops at the next step boundary); a second Ctrl-C ends the process.</summary>
    private static CancellationToken CancelOnCtrlC(TextWriter error)
    {
        var source = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            if (source.IsCancellationRequested) return;
            e.Cancel = true;
            source.Cancel();
            error.WriteLine();
            error.WriteLine("stopping at the end of this step to save a checkpoint (Ctrl-C again to abort without saving)");
        };
        return source.Token;
    }

    /// <summary>Training's own errors (a recipe, data that cannot be read, a divergence, a checkpoint that does not fit) beside the usual bad input.</summary>
    private static int Guarded(TextWriter error, Func<int> run)
    {
        try
        {
            return EvalCommand.Guarded("train", error, run);
        }
        catch (Exception e) when (e is RecipeException or TrainingDivergedException or InvalidDataException or Graft.Models.Vision.VisionModelException)
        {
            error.WriteLine($"graft train: {e.Message}");
            return 1;
        }
    }
}
