using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Training;
using Graft.Training.Data;

namespace Graft.Eval;

/// <summary>
/// Scores a base model folder on a folder of text test sets as <see cref="DemoTextWorld.WriteTestSets"/> lays them out
/// (one MMLU folder per set) by the answer letter's likelihood at several few-shot counts: the harness's own MMLU
/// benchmark on the base route.
/// </summary>
public static class TextTestEvaluation
{
    /// <summary>Zero-shot (the interleaved benchmark's layout) and Hendrycks' five.</summary>
    public static readonly IReadOnlyList<int> DefaultShots = [0, 5];

    /// <summary>Each set (by name, in order) at each shot count.</summary>
    public static List<TextTestScore> Score(string modelFolder, string testsFolder, IReadOnlyList<int>? shots = null, CancellationToken cancellationToken = default)
    {
        if (!Directory.Exists(testsFolder)) throw new DirectoryNotFoundException($"text test folder '{testsFolder}' does not exist");
        using var model = DecoderModel.Load(modelFolder);
        var scorer = new DecoderScoringModel(model, Tokenizer.FromFolder(modelFolder));
        var scores = new List<TextTestScore>();
        foreach (var set in Directory.GetDirectories(testsFolder).Order(StringComparer.Ordinal))
            foreach (int count in shots ?? DefaultShots)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var result = Benchmarks.Mmlu(new BenchSpec(BenchKind.Mmlu, set), scorer, new EvalOptions { Shots = count }, null);
                scores.Add(new TextTestScore(Path.GetFileName(set), count, result.Overall.Correct, result.Overall.Total));
            }
        return scores;
    }
}
