using Graft.Data;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tests.Eval;
using Graft.Training;

namespace Graft.Tests.Training;

/// <summary>
/// The tiny Llama checkpoint (3 layers, d = 64, bf16, vocabulary 320) with a byte-level tokenizer beside it, a small
/// shapes world and text world, and recipes small enough to train in a second.
/// </summary>
internal sealed class TrainingFixtures : IDisposable
{
    private readonly TempFolder _temp = new();

    public TrainingFixtures()
    {
        Model = EvalFixtures.ModelFolder(_temp, mergeLetters: false);
        Shapes = System.IO.Path.Combine(_temp.Path, "shapes");
        ShapesWorld.Write(new DataOutput(Shapes, force: false, ShapesWorld.OutputNames), 12, seed: 4, new ShapesWorldOptions { Size = 24, MaxShapes = 2 });
        Text = System.IO.Path.Combine(_temp.Path, "text");
        TextWorld.Write(new DataOutput(Text, force: false, TextWorld.OutputNames), 6, seed: 5);
    }

    public string Path => _temp.Path;
    public string Model { get; }
    public string Shapes { get; }
    public string Text { get; }

    public string Sub(string name) => System.IO.Path.Combine(_temp.Path, name);

    /// <summary>How the trainer lays conversations out on the tiny base: its plain chat template, turns ended by &lt;|endoftext|&gt;.</summary>
    public ConversationFormat Conversations()
    {
        var tokenizer = Graft.Models.Tokenization.Tokenizer.FromFolder(Model);
        return new ConversationFormat(Graft.Models.Chat.ChatTemplates.ForCheckpoint(Model, tokenizer), Graft.Plugins.ChatPrompts.EndOfTurnTokens(tokenizer, []));
    }

    /// <summary>4 tokens of 12 features per image.</summary>
    public static PatchPixelsFrontEnd Vision() => new(grid: 2, cells: 2);

    /// <summary>A one- or two-stage recipe for <paramref name="design"/> on the shapes world (and, with a text share, the alpaca set).</summary>
    public Recipe Recipe(string design, int steps = 4, string stages = "", double? textShare = null, string options = "{}", int seed = 1)
    {
        string parts = design switch
        {
            "bridge" => "\"projector\"",
            "mma" => "\"llm_adapters\", \"adapter_proj\", \"modality_embedding\"",
            "inner-adaptor" => "\"projector\", \"inner_layers\"",
            "wings" => "\"projector\", \"visual\"",
            _ => "\"patch_embedding\", \"mlp1\", \"markers\", \"ffn_ve\"",
        };
        string sources = textShare is null ? $"[\"shapes:{Shapes}\"]" : $"[\"shapes:{Shapes}\", \"alpaca:{Text}/alpaca.json\"]";
        string stageList = stages.Length > 0 ? stages
            : $$"""{"name": "only", "trainable": {"parts": [{{parts}}]}, "learning_rate": 5e-3, "steps": {{steps}}, "batch_size": 2, "warmup_steps": 1, "max_length": 400}""";
        return Graft.Training.Recipe.Parse($$"""
            {"name": "{{design}}-test", "design": {"name": "{{design}}", "options": {{options}}}, "seed": {{seed}},
             "data": {"sources": {{sources}}, "text_share": {{(textShare is null ? "null" : textShare.Value.ToString(System.Globalization.CultureInfo.InvariantCulture))}}},
             "stages": [{{stageList}}]}
            """, $"{design}-test.json");
    }

    /// <summary>Trains <paramref name="recipe"/> into <paramref name="run"/> on the tiny base.</summary>
    public TrainingResult Train(Recipe recipe, string run, bool resume = false, IProgress<TrainingProgress>? progress = null, CancellationToken cancellation = default,
        int? steps = null)
    {
        using var model = DecoderModel.Load(Model);
        return PluginTrainer.Train(new TrainingRequest
        {
            Recipe = recipe, Base = model, Vision = recipe.Design == VisualExperts.DesignName ? null : Vision(), RunFolder = Sub(run), Resume = resume, Steps = steps,
        }, progress, cancellation);
    }

    public void Dispose() => _temp.Dispose();
}

/// <summary>Reports synchronously (Progress&lt;T&gt; posts to the thread pool), calling <paramref name="report"/> for each.</summary>
internal sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
{
    public void Report(TrainingProgress value) => report(value);
}
