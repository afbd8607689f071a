using Graft.Data;
using Graft.Models.Chat;
using Graft.Models.Imaging;
using Graft.Models.Tokenization;
using Graft.Plugins;

namespace Graft.Training;

/// <summary>
/// How conversation data is laid out: the chat template (the base's own, or the one the recipe names) and the tokens that
/// end an assistant turn (trained with its content).
/// </summary>
public sealed record ConversationFormat(ChatTemplate Template, IReadOnlyCollection<string> EndOfTurn);

/// <summary>
/// The examples of one data source, read and tokenized once, each laid out as the evaluation, the commands and the server
/// ask the same kind of question: conversations (llava, shapes, alpaca) through the chat template
/// (<see cref="ChatPrompts"/>: the design's layout inside the user turn; every assistant turn's content and end-of-turn
/// token a target); scienceqa in LaVIN's prompt with "The answer is X. BECAUSE: ..." and the end of the sequence, choice
/// in the multiple-choice letter layout and mmlu in Hendrycks' 5-shot prompt with its letter (their published prompts,
/// laid out as the plug-in's design asks, <see cref="PromptLayout"/>). Every image is decoded once here, so a broken one
/// is reported before training starts.
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
    /// Reads <paramref name="spec"/> and tokenizes it in <paramref name="layout"/> (the plug-in's), conversations in
    /// <paramref name="conversations"/>' template; every record that cannot be used is reported with its file and record.
    /// </summary>
    public static TrainingData Load(DataSourceSpec spec, PromptLayout layout, Tokenizer tokenizer, int vocabSize, ConversationFormat? conversations = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(tokenizer);
        IEnumerable<(string, FormattedPrompt)> Chats(IEnumerable<(string Where, ChatTurns Turns)> items) =>
            items.Select(item => (item.Where, Render(item.Turns, layout, tokenizer, conversations
                ?? throw new ArgumentException($"data source {spec}: conversations are trained in a chat template, and the base has none; name one in the recipe (\"chat_template\": \"plain\" for a base with no chat training) or give the base one in its tokenizer_config.json"),
                item.Where)));
        var prompts = spec.Kind switch
        {
            "llava" => Chats(Conversations(spec.Path, LlavaReader.DefaultImageFolder(spec.Path))),
            "shapes" => Chats(Conversations(Path.Combine(spec.Path, "llava.json"), Path.Combine(spec.Path, "images"))),
            "scienceqa" => ScienceQa(spec).Select(p => (p.Where, PromptFormats.ScienceQaAnswered(p.Problem))),
            "choice" => ScienceQa(spec).Select(p => (p.Where, PromptFormats.ChoiceAnswered(p.Problem))),
            "mmlu" => Mmlu(spec),
            "alpaca" => Chats(AlpacaReader.Read(Existing(spec.Path, isFolder: false)).Select((e, i) => ($"{spec.Path} record {i}", PromptFormats.Chat(e)))),
            _ => throw new ArgumentException($"'{spec.Kind}' is not a data kind (kinds: {string.Join(", ", DataSourceSpec.Kinds)})"),
        };
        var examples = new List<TrainingExample>();
        var decoded = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (where, prompt) in prompts)
        {
            foreach (var image in prompt.ImagePaths)
                if (decoded.Add(image)) Decode(image, where);
            examples.Add(TrainingExample.Encode(prompt, layout, tokenizer, vocabSize, where));
        }
        if (examples.Count == 0) throw new ArgumentException($"data source {spec} holds no examples");
        return new TrainingData(spec, examples);
    }

    /// <summary>Decodes an image once to check it, so a missing or broken file stops the run before anything is written.</summary>
    private static void Decode(string image, string where)
    {
        if (!File.Exists(image)) throw new FileNotFoundException($"{where}: image file '{image}' does not exist", image);
        try
        {
            ImageDecoder.Load(image);
        }
        catch (ImageFormatException e)
        {
            throw new InvalidDataException($"{where}: {e.Message}", e);
        }
    }

    /// <summary>A conversation rendered in the template, every assistant turn's content and end-of-turn token a target.</summary>
    private static FormattedPrompt Render(ChatTurns turns, PromptLayout layout, Tokenizer tokenizer, ConversationFormat format, string where)
    {
        RenderedChat rendered;
        try
        {
            rendered = ChatPrompts.Render(layout, format.Template, tokenizer, turns.Messages, turns.Images.Select(list => list.Count).ToArray(),
                addGenerationPrompt: false, throughPlugin: true, endOfTurn: format.EndOfTurn);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{where}: {e.Message}", e);
        }
        return new FormattedPrompt(rendered.Text, turns.Images.SelectMany(list => list).ToArray(), rendered.Targets)
        {
            ImagesPlaced = true, AddSpecialTokens = !rendered.RendersBos,
        };
    }

    private static IEnumerable<(string, ChatTurns)> Conversations(string file, string imageFolder) =>
        LlavaReader.Read(Existing(file, isFolder: false), imageFolder).Select(c => ($"{file} record {c.Id}", PromptFormats.Chat(c, c.Turns.Count)));

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
