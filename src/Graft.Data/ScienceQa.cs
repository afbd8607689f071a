using System.Globalization;
using System.Text.Json;

namespace Graft.Data;

/// <summary>One ScienceQA problem as problems.json holds it; <see cref="ImagePath"/> is resolved to images/{split}/{qid}/image.png.</summary>
public sealed record ScienceQaProblem(
    string Id, string Question, IReadOnlyList<string> Choices, int Answer, string Hint, string? ImagePath,
    string Subject, int Grade, string Lecture, string Solution, string Split,
    string Topic, string Category, string Skill, string Task)
{
    public const string Letters = "ABCDE";

    public char AnswerLetter => Letters[Answer];

    /// <summary>
    /// The LaVIN training prompt (util/base_prompt.py, format "QCM-ALE", no captions):
    /// <c>Question: {q}\nContext: {hint or N/A}\nOptions: (A) a (B) b\nResponse:</c>, with double
    /// spaces collapsed once and the ends trimmed as LaVIN's str.replace / strip do.
    /// </summary>
    public string Prompt()
    {
        string context = Hint.Trim();
        if (context.Length == 0) context = "N/A";
        string options = string.Join(" ", Choices.Select((c, i) => $"({Letters[i]}) {c}"));
        return $"\nQuestion: {Question}\nContext: {context}\nOptions: {options}\nResponse:".Replace("  ", " ").Trim();
    }

    /// <summary>
    /// The LaVIN target: <c>The answer is X. BECAUSE: {lecture} {solution}</c>, newlines in lecture and
    /// solution written as a literal backslash-n as LaVIN does. Deviation: when lecture and solution are
    /// both empty LaVIN keeps a dangling "BECAUSE:" (its check assigns to an unused variable); we drop it,
    /// as its own evaluation-prompt builder does.
    /// </summary>
    public string Target()
    {
        string text = $"The answer is {AnswerLetter}. BECAUSE: {Lecture.Replace("\n", "\\n")} {Solution.Replace("\n", "\\n")}"
            .Replace("  ", " ").Trim();
        return text.EndsWith("BECAUSE:", StringComparison.Ordinal) ? text[..^"BECAUSE:".Length].Trim() : text;
    }

    // The breakdown as lupantech/ScienceQA's and LaVIN's get_scores define it, where a hint or image counts
    // when Python finds it truthy (non-empty). TXT and IMG overlap: a problem with both counts in each.

    /// <summary>TXT: has a non-empty hint (with or without an image).</summary>
    public bool HasText => Hint.Length > 0;

    /// <summary>IMG: has an image.</summary>
    public bool HasImage => ImagePath is not null;

    /// <summary>NO: neither hint nor image.</summary>
    public bool NoContext => !HasText && !HasImage;

    /// <summary>NAT, SOC or LAN.</summary>
    public string SubjectCode => Subject switch
    {
        "natural science" => "NAT",
        "social science" => "SOC",
        _ => "LAN",
    };

    /// <summary>G1-6 or G7-12.</summary>
    public string GradeBand => Grade <= 6 ? "G1-6" : "G7-12";
}

/// <summary>A ScienceQA folder: problems.json, pid_splits.json and images/{split}/{qid}/image.png.</summary>
public sealed class ScienceQaDataset
{
    private static readonly string[] Subjects = ["natural science", "social science", "language science"];

    private ScienceQaDataset(string folder, Dictionary<string, ScienceQaProblem> problems, Dictionary<string, List<string>> splits)
    {
        Folder = folder;
        Problems = problems;
        Splits = splits;
    }

    public string Folder { get; }
    public IReadOnlyDictionary<string, ScienceQaProblem> Problems { get; }

    /// <summary>Split name ("train", "val", "test", "minitrain", ...) to its qids, in file order.</summary>
    public IReadOnlyDictionary<string, List<string>> Splits { get; }

    public static ScienceQaDataset Load(string folder)
    {
        string problemsPath = Path.Combine(folder, "problems.json");
        string splitsPath = Path.Combine(folder, "pid_splits.json");

        var problems = new Dictionary<string, ScienceQaProblem>(StringComparer.Ordinal);
        using (var document = JsonFiles.ParseFile(problemsPath))
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new DataFormatException(problemsPath, "top level", $"expected an object of qid -> problem, found {document.RootElement.ValueKind}");
            foreach (var entry in document.RootElement.EnumerateObject())
                problems[entry.Name] = ParseProblem(JsonRecord.Object(problemsPath, $"qid {entry.Name}", entry.Value), entry.Name, folder);
        }

        var splits = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        using (var document = JsonFiles.ParseFile(splitsPath))
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new DataFormatException(splitsPath, "top level", $"expected an object of split -> qids, found {document.RootElement.ValueKind}");
            foreach (var entry in document.RootElement.EnumerateObject())
            {
                var record = new JsonRecord(splitsPath, $"split \"{entry.Name}\"", document.RootElement);
                var qids = record.StringArray(entry.Name);
                for (int i = 0; i < qids.Count; i++)
                    if (!problems.ContainsKey(qids[i]))
                        throw new DataFormatException(splitsPath, $"split \"{entry.Name}\" item {i}", $"qid \"{qids[i]}\" is not in problems.json");
                splits[entry.Name] = qids;
            }
        }
        return new ScienceQaDataset(folder, problems, splits);
    }

    /// <summary>The problems of one split, in pid_splits order; each image file is checked to exist.</summary>
    public List<ScienceQaProblem> Split(string name)
    {
        string splitsPath = Path.Combine(Folder, "pid_splits.json");
        if (!Splits.TryGetValue(name, out var qids))
            throw new DataFormatException(splitsPath, "top level", $"no split \"{name}\" (has {string.Join(", ", Splits.Keys)})");
        var result = new List<ScienceQaProblem>(qids.Count);
        foreach (var qid in qids)
        {
            var problem = Problems[qid];
            if (problem.ImagePath is { } image && !File.Exists(image))
                throw new DataFormatException(Path.Combine(Folder, "problems.json"), $"qid {qid}", $"image file missing: {image}");
            result.Add(problem);
        }
        return result;
    }

    private static ScienceQaProblem ParseProblem(JsonRecord record, string qid, string folder)
    {
        var choices = record.StringArray("choices");
        if (choices.Count < 2 || choices.Count > ScienceQaProblem.Letters.Length)
            throw record.Error($"has {choices.Count} choices; expected 2 to {ScienceQaProblem.Letters.Length}");
        int answer = record.Int("answer");
        if (answer < 0 || answer >= choices.Count)
            throw record.Error($"answer index {answer} is out of range for {choices.Count} choices");

        string subject = record.String("subject");
        if (!Subjects.Contains(subject))
            throw record.Error($"subject \"{subject}\" is not one of {string.Join(", ", Subjects)}");

        string gradeText = record.String("grade");
        if (!gradeText.StartsWith("grade", StringComparison.Ordinal)
            || !int.TryParse(gradeText.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out int grade) || grade is < 1 or > 12)
            throw record.Error($"grade \"{gradeText}\" is not grade1 .. grade12");

        string split = record.String("split");
        string? image = record.OptionalString("image");
        string? imagePath = string.IsNullOrEmpty(image) ? null : Path.Combine(folder, "images", split, qid, image);

        return new ScienceQaProblem(
            qid, record.String("question"), choices, answer, record.OptionalString("hint") ?? "", imagePath,
            subject, grade, record.OptionalString("lecture") ?? "", record.OptionalString("solution") ?? "", split,
            record.OptionalString("topic") ?? "", record.OptionalString("category") ?? "",
            record.OptionalString("skill") ?? "", record.OptionalString("task") ?? "");
    }
}

/// <summary>Correct / total per ScienceQA reporting category, as its get_scores tabulates them.</summary>
public sealed class ScienceQaBreakdown
{
    public static readonly string[] Categories = ["NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12"];

    private readonly Dictionary<string, (int Correct, int Total)> counts = Categories.ToDictionary(c => c, _ => (0, 0));

    public int Correct { get; private set; }
    public int Total { get; private set; }

    public void Add(ScienceQaProblem problem, bool correct)
    {
        Count(problem.SubjectCode, correct);
        if (problem.HasText) Count("TXT", correct);
        if (problem.HasImage) Count("IMG", correct);
        if (problem.NoContext) Count("NO", correct);
        Count(problem.GradeBand, correct);
        Total++;
        if (correct) Correct++;
    }

    public (int Correct, int Total) this[string category] => counts[category];

    /// <summary>Percent correct, or NaN when the category is empty.</summary>
    public double Accuracy(string category) => counts[category] is var (c, t) && t > 0 ? 100.0 * c / t : double.NaN;

    private void Count(string category, bool correct)
    {
        var (c, t) = counts[category];
        counts[category] = (c + (correct ? 1 : 0), t + 1);
    }
}
