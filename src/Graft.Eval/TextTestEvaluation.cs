using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Training;

namespace Graft.Eval;

/// <summary>Scores a base model folder on MMLU-layout test sets with the harness, at several few-shot counts.</summary>
public static class TextTestEvaluation
{
    /// <summary>The shot counts the demo assets are scored at: zero-shot (the interleaved benchmark's layout) and Hendrycks' five.</summary>
    public static readonly IReadOnlyList<int> DefaultShots = [0, 5];

    /// <summary>One score per set and shot count, in that order; the model and its tokenizer come from <paramref name="modelFolder"/>.</summary>
    public static List<TextTestScore> Score(string modelFolder, IReadOnlyList<(string Name, string Folder)> testSets, IReadOnlyList<int>? shots = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(testSets);
        using var model = DecoderModel.Load(modelFolder);
        var scorer = new DecoderScoringModel(model, Tokenizer.FromFolder(modelFolder));
        var scores = new List<TextTestScore>();
        foreach (var (name, folder) in testSets)
            foreach (int count in shots ?? DefaultShots)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var result = Benchmarks.Mmlu(new BenchSpec(BenchKind.Mmlu, folder), scorer, new EvalOptions { Shots = count }, null);
                scores.Add(new TextTestScore(name, count, result.Overall.Correct, result.Overall.Total));
            }
        return scores;
    }
}
