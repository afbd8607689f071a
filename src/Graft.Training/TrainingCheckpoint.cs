using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.Optim;
using Graft.Tensors.SafeTensors;

namespace Graft.Training;

/// <summary>
/// Where a run stands at a checkpoint: steps done (overall, and in the current stage), the examples the stage's stream
/// has drawn, the counts and totals so far, and the summaries of the stages already finished. Dropout masks are seeded
/// from the recipe's seed and the step, so nothing else is needed to continue bit for bit.
/// </summary>
public sealed record CheckpointState
{
    public const int CurrentFormat = 1;

    public int Format { get; init; } = CurrentFormat;
    public required int Step { get; init; }
    public required int Stage { get; init; }
    public required int StageStep { get; init; }
    public required long Drawn { get; init; }
    public required long Skipped { get; init; }
    public required long Truncated { get; init; }
    public required long Tokens { get; init; }
    public required double Seconds { get; init; }
    public required List<StageSummary> Finished { get; init; }

    /// <summary>The current stage so far (its first loss, tokens and time), null at a stage boundary.</summary>
    public StageSummary? Current { get; init; }
}

/// <summary>
/// What a checkpoint holds besides its state: the plug-in, the optimiser (its state keyed by <see cref="Names"/>), and,
/// for Bridge's full mode, the base being trained (<see cref="TrainedBase"/>, written as a Hugging Face folder with the
/// tokenizer files of <see cref="TokenizerFolder"/>, the plug-in saved for it).
/// </summary>
public sealed record CheckpointContents(IPlugin Plugin, JsonObject Training, AdamW Optimizer, IReadOnlyDictionary<Tensor, string> Names,
    DecoderModel? TrainedBase = null, string? TokenizerFolder = null, RecordedChatTemplate? ChatTemplate = null);

/// <summary>
/// Checkpoints of a run: checkpoints/step-NNNNNN/ holding plugin/ (a plug-in folder), optimizer.safetensors (AdamW's
/// moments and step counts, by tensor name), state.json and, in Bridge's full mode, base/ (the LLM being trained, F32).
/// Each is written whole into a temporary folder beside the others and renamed into place, so a checkpoint folder is
/// either complete or absent; the last <see cref="Keep"/> are kept.
/// </summary>
public static class TrainingCheckpoint
{
    public const string FolderName = "checkpoints";
    public const string PluginFolderName = "plugin";
    public const string BaseFolderName = "base";
    public const string OptimizerFileName = "optimizer.safetensors";
    public const string StateFileName = "state.json";
    public const int Keep = 2;
    private const string Prefix = "step-";
    private const string TemporaryPrefix = ".tmp-";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>Writes a checkpoint of <paramref name="state"/>'s step and returns its folder; older ones beyond <see cref="Keep"/> are removed.</summary>
    public static string Save(string runFolder, CheckpointState state, CheckpointContents contents)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(contents);
        string root = Path.Combine(runFolder, FolderName);
        Directory.CreateDirectory(root);
        string final = Path.Combine(root, Prefix + state.Step.ToString("D6", CultureInfo.InvariantCulture));
        if (Directory.Exists(final)) return final;   // the same step, already saved (a run cancelled right after it resumed)
        string temporary = Path.Combine(root, $"{TemporaryPrefix}{Path.GetFileName(final)}-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(temporary);
            BaseDescription? savedFor = null;
            if (contents.TrainedBase is { } model)
            {
                WriteBase(Path.Combine(temporary, BaseFolderName), model, contents.TokenizerFolder);
                savedFor = CurrentDescription(model);
            }
            PluginFile.Save(contents.Plugin, Path.Combine(temporary, PluginFolderName), contents.Training, savedFor, contents.ChatTemplate);
            SafeTensorsWriter.Write(Path.Combine(temporary, OptimizerFileName), contents.Optimizer.StateTensors(tensor => contents.Names[tensor]));
            File.WriteAllText(Path.Combine(temporary, StateFileName), JsonSerializer.Serialize(state, Json));
            Directory.Move(temporary, final);
        }
        finally
        {
            if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
        }
        foreach (var old in Complete(root).SkipLast(Keep)) Directory.Delete(old.Folder, recursive: true);
        return final;
    }

    /// <summary>A trained decoder as a Hugging Face folder (F32, every bit kept), with the tokenizer files of <paramref name="tokenizerFolder"/> when given.</summary>
    public static void WriteBase(string folder, DecoderModel model, string? tokenizerFolder) =>
        DecoderCheckpointWriter.Save(folder, model.Config, model.Weights, new DecoderCheckpointOptions { TokenizerFolder = tokenizerFolder });

    /// <summary>The description of a base whose weights change (the fingerprint taken now, not the one cached for the model).</summary>
    public static BaseDescription CurrentDescription(DecoderModel model) =>
        BaseDescription.Of(model) with { Fingerprint = BaseFingerprint.Compute(model.Config, model.Weights) };

    /// <summary>The newest complete checkpoint of a run, or null; temporary folders a crash left behind are removed first.</summary>
    public static (string Folder, CheckpointState State)? Latest(string runFolder)
    {
        string root = Path.Combine(runFolder, FolderName);
        if (!Directory.Exists(root)) return null;
        foreach (var stale in Directory.GetDirectories(root, TemporaryPrefix + "*")) Directory.Delete(stale, recursive: true);
        var newest = Complete(root).LastOrDefault();
        if (newest.Folder is null) return null;
        string statePath = Path.Combine(newest.Folder, StateFileName);
        CheckpointState? state;
        try
        {
            state = JsonSerializer.Deserialize<CheckpointState>(File.ReadAllText(statePath), Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{statePath} is not a checkpoint state: {e.Message}");
        }
        if (state is null || state.Format != CheckpointState.CurrentFormat)
            throw new InvalidDataException($"{statePath}: checkpoint format {state?.Format} is not {CheckpointState.CurrentFormat}");
        if (state.Step != newest.Step) throw new InvalidDataException($"{statePath} says step {state.Step}, but its folder is {Path.GetFileName(newest.Folder)}");
        return (newest.Folder, state);
    }

    /// <summary>Restores the optimiser state saved with a checkpoint into <paramref name="optimizer"/> (built for the same stage, its tensors named by <paramref name="names"/>).</summary>
    public static void LoadOptimizer(string checkpoint, AdamW optimizer, IReadOnlyDictionary<Tensor, string> names)
    {
        string path = Path.Combine(checkpoint, OptimizerFileName);
        using var file = SafeTensorsFile.Open(path);
        var tensors = file.Tensors.ToDictionary(t => t.Name, t => Tensor.FromArray(file.ReadFloats(t.Name), t.Shape));
        try
        {
            optimizer.LoadState(tensors, tensor => names[tensor]);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}");
        }
    }

    private static IEnumerable<(string Folder, int Step)> Complete(string root) =>
        Directory.GetDirectories(root, Prefix + "*")
            .Select(folder => (Folder: folder, Ok: int.TryParse(Path.GetFileName(folder)[Prefix.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int step), Step: step))
            .Where(c => c.Ok)
            .OrderBy(c => c.Step)
            .Select(c => (c.Folder, c.Step));
}
