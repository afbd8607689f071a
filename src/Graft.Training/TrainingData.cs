using Graft.Data;
using Graft.Models.Tokenization;
using Graft.Plugins;

namespace Graft.Training;

/// <summary>
/// The examples of one data source, read and tokenized once, each laid out as the evaluation asks the same kind of
/// question (<see cref="PromptFormats"/>): llava and shapes as free answers (every assistant turn a target), scienceqa
/// in LaVIN's prompt with "The answer is X. BECAUSE: ..." and the end of the sequence, choice in the multiple-choice
/// letter layout, mmlu in Hendrycks' 5-shot prompt with its letter, alpaca in the Stanford template; then laid out as the
/// plug-in's design asks (<see cref="PromptLayout"/>).
/// </summary>
public sealed class TrainingData
{
    /// <summary>Hendrycks' k, as graft eval uses it by default.</summary>
    public const int MmluShots = 5;

    private TrainingData(DataSourceSpec spec, IReadOnlyList<TrainingExample> examples)
    {
        Spec = spec;
        Examples = examples;
    }

    public DataSourceSpec Spec { get; }
    public IReadOnlyList<TrainingExample> Examples { get; }

    /// <summary>
    /// Reads <paramref name="spec"/> and tokenizes it in <paramref name="layout"/> (the plug-in's); every record that cannot
    /// be used is reported with its file and record.
    /// </summary>
    public static TrainingData Load(DataSourceSpec spec, PromptLayout layout, Tokenizer tokenizer, int vocabSize)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var prompts = spec.Kind switch
        {
            "llava" => Conversations(spec.Path, LlavaReader.DefaultImageFolder(spec.Path)),
            "shapes" => Conversations(Path.Combine(spec.Path, "llava.json"), Path.Combine(spec.Path, "images")),
            "scienceqa" => ScienceQa(spec).Select(p => (p.Where, PromptFormats.ScienceQaAnswered(p.Problem))),
            "choice" => ScienceQa(spec).Select(p => (p.Where, PromptFormats.ChoiceAnswered(p.Problem))),
            "mmlu" => Mmlu(spec),
            "alpaca" => AlpacaReader.Read(Existing(spec.Path, isFolder: false)).Select((e, i) => ($"{spec.Path} record {i}", PromptFormats.AlpacaAnswered(e))),
            _ => throw new ArgumentException($"'{spec.Kind}' is not a data kind (kinds: {string.Join(", ", DataSourceSpec.Kinds)})"),
        };
        var examples = new List<TrainingExample>();
        foreach (var (where, prompt) in prompts)
        {
            foreach (var image in prompt.ImagePaths)
                if (!File.Exists(image)) throw new FileNotFoundException($"{where}: image file '{image}' does not exist", image);
            examples.Add(TrainingExample.Encode(prompt, layout, tokenizer, vocabSize, where));
        }
        if (examples.Count == 0) throw new ArgumentException($"data source {spec} holds no examples");
        return new TrainingData(spec, examples);
    }

    private static IEnumerable<(string, FormattedPrompt)> Conversations(string file, string imageFolder) =>
        LlavaReader.Read(Existing(file, isFolder: false), imageFolder).Select(c => ($"{file} record {c.Id}", PromptFormats.FreeAnswerTranscript(c)));

    private static IEnumerable<(string Where, ScienceQaProblem Problem)> ScienceQa(DataSourceSpec spec)
    {
        string folder = Existing(spec.Path, isFolder: true);
        return ScienceQaDataset.Load(folder).Split(spec.Split ?? "train").Select(p => ($"{folder} qid {p.Id}", p));
    }

    private static IEnumerable<(string, FormattedPrompt)> Mmlu(DataSourceSpec spec)
    {
        var subjects = MmluReader.LoadWithShots(spec.Path, spec.Split ?? "train", MmluShots);
        foreach (var (subject, (questions, dev)) in subjects)
            for (int i = 0; i < questions.Count; i++)
            {
                // Training on the dev split itself: a question is never its own shot (its answer would sit in the prompt).
                var shots = dev.Where(d => d.Question != questions[i].Question).ToList();
                yield return ($"{spec.Path} {subject} question {i}", PromptFormats.MmluAnswered(questions[i], shots, Math.Min(MmluShots, shots.Count)));
            }
    }

    private static string Existing(string path, bool isFolder)
    {
        if (isFolder ? Directory.Exists(path) : File.Exists(path)) return path;
        throw new FileNotFoundException($"{(isFolder ? "data folder" : "data file")} '{path}' does not exist", path);
    }
}
