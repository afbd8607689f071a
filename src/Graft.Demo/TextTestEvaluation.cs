using Graft.Data;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Eval;

namespace Graft.Demo;

/// <summary>
/// Scores a base model folder on a folder of text test sets as <see cref="DemoTextWorld.WriteTestSets"/> lays them out:
/// each LLaVA JSON file under free/ by greedy free answers compared exactly, each MMLU folder under choice/ by the answer
/// letter's likelihood at the given few-shot counts (the harness's own benchmarks, on the base route).
/// </summary>
public static class TextTestEvaluation
{
    /// <summary>Zero-shot, the interleaved benchmark's layout (five shots do not fit the demo base's context of 256 tokens).</summary>
    public static readonly IReadOnlyList<int> DefaultShots = [0];

    /// <summary>Free sets (by name), then choice sets (by name, at each shot count).</summary>
    public static List<TextTestScore> Score(string modelFolder, string testsFolder, IReadOnlyList<int>? shots = null, CancellationToken cancellationToken = default)
    {
        if (!Directory.Exists(testsFolder)) throw new DirectoryNotFoundException($"text test folder '{testsFolder}' does not exist");
        using var model = DecoderModel.Load(modelFolder);
        var tokenizer = Tokenizer.FromFolder(modelFolder);
        var scorer = new DecoderScoringModel(model, tokenizer, ModelEvaluation.BaseTemplate(modelFolder, tokenizer, null));
        var scores = new List<TextTestScore>();
        string choice = Path.Combine(testsFolder, DemoTextWorld.ChoiceFolder), free = Path.Combine(testsFolder, DemoTextWorld.FreeFolder);
        foreach (var file in Directory.Exists(free) ? Directory.GetFiles(free, "*.json").Order(StringComparer.Ordinal).ToArray() : [])
        {
            cancellationToken.ThrowIfCancellationRequested();
            var result = Benchmarks.FreeAnswers(new BenchSpec(BenchKind.Llava, file), file, free, scorer, new EvalOptions { MaxNewTokens = 16 }, null);
            scores.Add(new TextTestScore(Path.GetFileNameWithoutExtension(file), TextTestScore.FreeMethod, 0, result.Overall.Correct, result.Overall.Total));
        }
        foreach (var set in Directory.Exists(choice) ? Directory.GetDirectories(choice).Order(StringComparer.Ordinal).ToArray() : [])
            foreach (int count in shots ?? DefaultShots)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var result = Benchmarks.Mmlu(new BenchSpec(BenchKind.Mmlu, set), scorer, new EvalOptions { Shots = count }, null);
                scores.Add(new TextTestScore(Path.GetFileName(set), TextTestScore.LetterMethod, count, result.Overall.Correct, result.Overall.Total));
            }
        return scores;
    }
}
