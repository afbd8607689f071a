using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;

namespace Graft.Eval;

/// <summary>A model folder, with or without a plug-in, loaded and run on a list of benchmarks: what `graft eval`, `graft report` and the demo do.</summary>
public static class ModelEvaluation
{
    /// <summary>Loads the base and its tokenizer and runs every benchmark on the base route.</summary>
    public static EvalRun Evaluate(string folder, IReadOnlyList<BenchSpec> benches, EvalOptions options, ProgressBar? progress)
    {
        using var model = DecoderModel.Load(folder);
        var scorer = new DecoderScoringModel(model, Tokenizer.FromFolder(folder));
        return EvalRun.Run(folder, scorer, benches, options, progress);
    }

    /// <summary>
    /// Loads the base, the plug-in (with the vision front end its manifest names: a tower is opened from
    /// <paramref name="visionFolder"/>) and runs every benchmark through it.
    /// </summary>
    public static (EvalRun Run, long TrainableParameters, bool CanRouteText) EvaluatePlugin(
        string folder, string pluginFolder, string? visionFolder, TextRoute? textRoute, IReadOnlyList<BenchSpec> benches, EvalOptions options, ProgressBar? progress)
    {
        using var model = DecoderModel.Load(folder);
        using var vision = PluginDeployment.LoadPlugin(model, pluginFolder, visionFolder, out var plugin) as IDisposable;
        var route = textRoute ?? (plugin.CanRouteText ? TextRoute.Plugin : TextRoute.Base);
        var host = new PluginHost(model);
        string name = Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(pluginFolder));
        host.Attach(name, plugin, route);
        var scorer = new PluginScoringModel(host, name, Tokenizer.FromFolder(folder), route);
        return (EvalRun.Run(folder, scorer, benches, options, progress), plugin.Parameters.Sum(p => (long)p.Tensor.Length), plugin.CanRouteText);
    }
}
