using Graft.Models.Chat;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;

namespace Graft.Eval;

/// <summary>A model folder, with or without a plug-in, loaded and run on a list of benchmarks: what `graft eval`, `graft report` and the demo do.</summary>
public static class ModelEvaluation
{
    /// <summary>
    /// Loads the base and its tokenizer and runs every benchmark on the base route; conversations are laid out in the base's
    /// own chat template (or the one <paramref name="templateName"/> names).
    /// </summary>
    public static EvalRun Evaluate(string folder, IReadOnlyList<BenchSpec> benches, EvalOptions options, ProgressBar? progress, string? templateName = null)
    {
        using var model = DecoderModel.Load(folder);
        var tokenizer = Tokenizer.FromFolder(folder);
        var scorer = new DecoderScoringModel(model, tokenizer, BaseTemplate(folder, tokenizer, templateName));
        return EvalRun.Run(folder, scorer, benches, options, progress);
    }

    /// <summary>The base's chat template (or the named one); null when it has none, which only conversation benchmarks need.</summary>
    public static ChatTemplate? BaseTemplate(string folder, Tokenizer tokenizer, string? templateName)
    {
        try
        {
            return ChatTemplates.ForCheckpoint(folder, tokenizer, templateName);
        }
        catch (InvalidOperationException) when (templateName is null)
        {
            return null;
        }
    }

    /// <summary>
    /// Loads the base, the plug-in (with the vision front end its manifest names: the tower folder it records, or
    /// <paramref name="visionFolder"/>) and runs every benchmark through it; conversations are laid out in the chat template
    /// the plug-in was trained in (else the base's own, or the one <paramref name="templateName"/> names).
    /// </summary>
    public static (EvalRun Run, long TrainableParameters, bool CanRouteText) EvaluatePlugin(
        string folder, string pluginFolder, string? visionFolder, TextRoute? textRoute, IReadOnlyList<BenchSpec> benches, EvalOptions options, ProgressBar? progress,
        string? templateName = null)
    {
        using var model = DecoderModel.Load(folder);
        using var vision = PluginDeployment.LoadPlugin(model, pluginFolder, visionFolder, out var plugin) as IDisposable;
        var route = textRoute ?? (plugin.CanRouteText ? TextRoute.Plugin : TextRoute.Base);
        var host = new PluginHost(model);
        string name = Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(pluginFolder));
        host.Attach(name, plugin, route);
        var tokenizer = Tokenizer.FromFolder(folder);
        var scorer = new PluginScoringModel(host, name, tokenizer, route, BaseTemplate(folder, tokenizer, templateName));
        return (EvalRun.Run(folder, scorer, benches, options, progress), plugin.Parameters.Sum(p => (long)p.Tensor.Length), plugin.CanRouteText);
    }

    /// <summary>One plug-in's results in <see cref="EvaluatePlugins"/>.</summary>
    public sealed record PluginRun(string Name, string Folder, EvalRun Run, long TrainableParameters, bool CanRouteText);

    /// <summary>
    /// The base route and every plug-in of <paramref name="plugins"/> (name, folder) on the same benchmarks, each plug-in with
    /// its own tower (the one it records, unless <paramref name="vision"/> names another) and its own chat template. Every
    /// plug-in and tower is opened and checked before the first benchmark runs, so a wrong one fails at once.
    /// </summary>
    public static (EvalRun Base, IReadOnlyList<PluginRun> Plugins) EvaluatePlugins(string folder, IReadOnlyList<KeyValuePair<string, string>> plugins,
        VisionOverrides? vision, IReadOnlyList<BenchSpec> benches, EvalOptions options, ProgressBar? progress, string? templateName = null)
    {
        ArgumentNullException.ThrowIfNull(plugins);
        var tokenizer = Tokenizer.FromFolder(folder);
        var baseTemplate = BaseTemplate(folder, tokenizer, templateName);
        using var deployment = PluginDeployment.Open(folder, plugins, vision);
        var baseRun = EvalRun.Run(folder, new DecoderScoringModel(deployment.Model, tokenizer, baseTemplate), benches, options, progress);
        var runs = new List<PluginRun>();
        foreach (var (name, pluginFolder) in plugins)
        {
            var plugin = deployment.Host.Plugin(name);
            var route = plugin.CanRouteText ? TextRoute.Plugin : TextRoute.Base;
            var host = new PluginHost(deployment.Model);
            host.Attach(name, plugin, route);
            var run = EvalRun.Run(folder, new PluginScoringModel(host, name, tokenizer, route, baseTemplate), benches, options, progress);
            runs.Add(new PluginRun(name, pluginFolder, run, plugin.Parameters.Sum(p => (long)p.Tensor.Length), plugin.CanRouteText));
        }
        return (baseRun, runs);
    }
}
