using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
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
/// Checkpoints of a run: checkpoints/step-NNNNNN/ holding plugin/ (a plug-in folder), optimizer.safetensors (AdamW's
/// moments and step counts, by tensor name) and state.json. Each is written whole into a temporary folder beside the
/// others and renamed into place, so a checkpoint folder is either complete or absent; the last <see cref="Keep"/> are kept.
/// </summary>
public static class TrainingCheckpoint
{
    public const string FolderName = "checkpoints";
    public const string PluginFolderName = "plugin";
    public const string OptimizerFileName = "optimizer.safetensors";
    public const string StateFileName = "state.json";
    public const int Keep = 2;
    private const string Prefix = "step-";
    private const string TemporaryPrefix = ".tmp-";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>Writes a checkpoint of <paramref name="state"/>'s step and returns its folder; older ones beyond <see cref="Keep"/> are removed.</summary>
    public static string Save(string runFolder, CheckpointState state, IPlugin plugin, JsonObject training, AdamW optimizer)
    {
        string root = Path.Combine(runFolder, FolderName);
        Directory.CreateDirectory(root);
        string final = Path.Combine(root, Prefix + state.Step.ToString("D6", CultureInfo.InvariantCulture));
        if (Directory.Exists(final)) return final;   // the same step, already saved (a run cancelled right after it resumed)
        string temporary = Path.Combine(root, $"{TemporaryPrefix}{Path.GetFileName(final)}-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(temporary);
            PluginFile.Save(plugin, Path.Combine(temporary, PluginFolderName), training);
            SafeTensorsWriter.Write(Path.Combine(temporary, OptimizerFileName), optimizer.StateTensors(NameOf(plugin)));
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

    /// <summary>Restores the optimiser state saved with a checkpoint into <paramref name="optimizer"/> (built for the same stage).</summary>
    public static void LoadOptimizer(string checkpoint, AdamW optimizer, IPlugin plugin)
    {
        string path = Path.Combine(checkpoint, OptimizerFileName);
        using var file = SafeTensorsFile.Open(path);
        var tensors = file.Tensors.ToDictionary(t => t.Name, t => Tensor.FromArray(file.ReadFloats(t.Name), t.Shape));
        try
        {
            optimizer.LoadState(tensors, NameOf(plugin));
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}");
        }
    }

    /// <summary>Optimiser state is keyed by the plug-in's tensor names, which a reloaded plug-in shares.</summary>
    private static Func<Tensor, string> NameOf(IPlugin plugin)
    {
        var names = plugin.Parameters.ToDictionary<PluginParameter, Tensor, string>(p => p.Tensor, p => p.Name, ReferenceEqualityComparer.Instance);
        return tensor => names[tensor];
    }

    private static IEnumerable<(string Folder, int Step)> Complete(string root) =>
        Directory.GetDirectories(root, Prefix + "*")
            .Select(folder => (Folder: folder, Ok: int.TryParse(Path.GetFileName(folder)[Prefix.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int step), Step: step))
            .Where(c => c.Ok)
            .OrderBy(c => c.Step)
            .Select(c => (c.Folder, c.Step));
}
