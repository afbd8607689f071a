using System.Globalization;
using System.Text;

namespace Graft.Training.Data;

/// <summary>
/// What fixes the demo's worlds: the knowledge base (seed, size, and how its cities are split by what training
/// shows of them) and the shapes scenes whose descriptions the base model reads. The demo regenerates the same
/// knowledge base and held-out questions from these values alone.
/// </summary>
public sealed record DemoWorldParameters
{
    public ulong Seed { get; init; } = 1;

    /// <summary>Cities (and as many held-out arithmetic facts) in the knowledge base.</summary>
    public int Cities { get; init; } = 48;

    /// <summary>The first cities: stated, asked as free questions and drilled as multiple choice.</summary>
    public int DrillCities { get; init; } = 16;

    /// <summary>The next cities: stated and asked as free questions, never multiple choice (their choice questions are held out).</summary>
    public int QuestionCities { get; init; } = 16;

    /// <summary>Shapes scenes described in words, as the demo's images are drawn.</summary>
    public ShapesWorldOptions Shapes { get; init; } = new();

    /// <summary>The remaining cities appear only as statements.</summary>
    public int StatementCities => Cities - DrillCities - QuestionCities;

    public void Validate()
    {
        if (Cities is < 4 or > 1000) throw new ArgumentOutOfRangeException(nameof(Cities), Cities, "the text world makes 4 to 1000 cities");
        if (DrillCities < 1 || QuestionCities < 0 || StatementCities < 0)
            throw new ArgumentException($"{DrillCities} drilled + {QuestionCities} questioned cities do not fit in {Cities} (at least one drilled)");
    }
}

/// <summary>Multiple-choice test questions of one kind, with training questions as their few-shot examples.</summary>
public sealed record TestSet(string Name, string Description, IReadOnlyList<MmluQuestion> Questions, IReadOnlyList<MmluQuestion> Shots);

/// <summary>Free test questions of one kind with their short answers, asked as the harness asks ("Question: q\nAnswer:").</summary>
public sealed record FreeTestSet(string Name, string Description, IReadOnlyList<(string Question, string Answer)> Items);

/// <summary>
/// The text the demo's base model is trained on and the questions it is tested with, over the text world's
/// knowledge base and the shapes world's vocabulary. Cities come in three groups: drilled (statements, free
/// questions, multiple choice), questioned (statements and free questions) and stated (statements only); the
/// knowledge base's own arithmetic facts are never shown, while other facts of the same distribution are.
/// Held out: the choice questions of the questioned and stated cities, and of the knowledge base's arithmetic.
/// </summary>
/// <remarks>
/// Formats are the ones the evaluation harness and the plug-ins use: statements in several phrasings, the
/// harness's "Question: ..\nAnswer: .." transcripts, Hendrycks' k-shot MMLU prompts, the interleaved benchmark's
/// zero-shot choice chains, LaVIN's ScienceQA prompt, and ChatML turns. Shapes scenes are told in words exactly
/// where an image would stand ("Question: {description}\n{question}"), so a plug-in only has to make its image
/// read like the description the base already understands.
/// </remarks>
public sealed class DemoTextWorld
{
    private readonly HashSet<(int, char, int)> _heldOutArithmetic;
    private readonly List<MmluQuestion> _drillQuestions;

    public DemoTextWorld(DemoWorldParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        parameters.Validate();
        Parameters = parameters;
        Knowledge = TextWorld.NewKnowledgeBase(new SeededRandom(parameters.Seed), parameters.Cities);
        DrillCities = Knowledge.Cities.Take(parameters.DrillCities).ToList();
        QuestionCities = Knowledge.Cities.Skip(parameters.DrillCities).Take(parameters.QuestionCities).ToList();
        StatementCities = Knowledge.Cities.Skip(parameters.DrillCities + parameters.QuestionCities).ToList();
        _heldOutArithmetic = Knowledge.Arithmetic.Select(f => (f.Left, f.Op, f.Right)).ToHashSet();

        // Held-out questions come from their own generator, so they do not depend on how much training text is drawn.
        var questions = new SeededRandom(parameters.Seed ^ 0x5EED_0F_7E57UL);
        _drillQuestions = DrillCities.SelectMany(c => CityQuestions(c, questions)).ToList();
        var shots = Shots(questions);
        TestSets =
        [
            new("facts-drilled", "choice questions on cities drilled as choices in training (not held out: what training reached)",
                DrillCities.SelectMany(c => CityQuestions(c, questions)).ToList(), shots),
            new("facts-asked", "choice questions on cities seen as statements and free questions, never as choices",
                QuestionCities.SelectMany(c => CityQuestions(c, questions)).ToList(), shots),
            new("facts-stated", "choice questions on cities seen only as statements",
                StatementCities.SelectMany(c => CityQuestions(c, questions)).ToList(), shots),
            new("arithmetic", "choice questions on sums, differences and products never seen in training",
                Knowledge.Arithmetic.Select(f => TextWorld.ArithmeticQuestion(f, questions)).ToList(), shots),
        ];
        FreeTestSets =
        [
            new("facts-asked", "free questions on cities asked these questions in training (recall, not held out)",
                QuestionCities.SelectMany(c => CityQuestionsInWords(c).Select(q => (q.Question, q.Short))).ToList()),
            new("facts-stated", "free questions on cities seen only as statements",
                StatementCities.SelectMany(c => CityQuestionsInWords(c).Select(q => (q.Question, q.Short))).ToList()),
            new("arithmetic", "sums, differences and products never seen in training, answered with the number",
                Knowledge.Arithmetic.Select(f => ($"What is {f.Expression}?", f.Result.ToString(CultureInfo.InvariantCulture))).ToList()),
        ];
    }

    public DemoWorldParameters Parameters { get; }
    public KnowledgeBase Knowledge { get; }
    public IReadOnlyList<City> DrillCities { get; }
    public IReadOnlyList<City> QuestionCities { get; }
    public IReadOnlyList<City> StatementCities { get; }

    /// <summary>The choice test sets, by kind: facts-drilled (a reference, not held out), then the held-out facts-asked, facts-stated and arithmetic.</summary>
    public IReadOnlyList<TestSet> TestSets { get; }

    /// <summary>
    /// The free-answer test sets: facts-asked (questioned cities, asked in these words in training: recall, not held
    /// out), facts-stated (cities only ever stated: held out) and arithmetic (held out).
    /// </summary>
    public IReadOnlyList<FreeTestSet> FreeTestSets { get; }

    /// <summary>Folders of <see cref="WriteTestSets"/>: MMLU layouts under choice/, LLaVA JSON files under free/.</summary>
    public const string ChoiceFolder = "choice";
    public const string FreeFolder = "free";

    /// <summary>Whether an arithmetic fact is one of the held-out ones (never part of the training text).</summary>
    public bool IsHeldOut(ArithmeticFact fact) => _heldOutArithmetic.Contains((fact.Left, fact.Op, fact.Right));

    /// <summary>
    /// Writes the choice sets as MMLU folders choice/NAME/{dev,test}/{subject}_{split}.csv (dev: five training questions per
    /// subject, the few-shot examples), for <c>graft eval --bench mmlu:FOLDER/choice/NAME</c>, and the free sets as LLaVA
    /// JSON without images, free/NAME.json, for <c>graft eval --bench llava:FOLDER/free/NAME.json</c>.
    /// </summary>
    public void WriteTestSets(DataOutput output)
    {
        ArgumentNullException.ThrowIfNull(output);
        foreach (var set in TestSets)
            foreach (var subject in set.Questions.Select(q => q.Subject).Distinct().Order(StringComparer.Ordinal))
            {
                WriteCsv(output, $"{ChoiceFolder}/{set.Name}/dev/{subject}_dev.csv", set.Shots.Where(q => q.Subject == subject));
                WriteCsv(output, $"{ChoiceFolder}/{set.Name}/test/{subject}_test.csv", set.Questions.Where(q => q.Subject == subject));
            }
        foreach (var set in FreeTestSets)
            output.WriteJson($"{FreeFolder}/{set.Name}.json", w =>
            {
                w.WriteStartArray();
                for (int i = 0; i < set.Items.Count; i++)
                {
                    w.WriteStartObject();
                    w.WriteString("id", $"{set.Name}-{i}");
                    w.WriteStartArray("conversations");
                    foreach (var (from, value) in new[] { ("human", set.Items[i].Question), ("gpt", set.Items[i].Answer) })
                    {
                        w.WriteStartObject();
                        w.WriteString("from", from);
                        w.WriteString("value", value);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            });
    }

    private static void WriteCsv(DataOutput output, string path, IEnumerable<MmluQuestion> questions)
    {
        var text = new StringBuilder();
        foreach (var q in questions) Csv.AppendRecord(text, [q.Question, .. q.Choices, q.AnswerLetter.ToString()]);
        output.WriteText(path, text.ToString());
    }

    /// <summary>Five training questions per subject: drilled cities' geography and history, and arithmetic that is not held out.</summary>
    private List<MmluQuestion> Shots(SeededRandom random)
    {
        var shots = new List<MmluQuestion>();
        foreach (var subject in new[] { "world_geography", "world_history" })
            shots.AddRange(_drillQuestions.Where(q => q.Subject == subject).Take(5));
        while (shots.Count(q => q.Subject == "arithmetic") < 5) shots.Add(TextWorld.ArithmeticQuestion(TrainingArithmetic(random), random));
        return shots;
    }

    private List<MmluQuestion> CityQuestions(City city, SeededRandom random) =>
        [.. TextWorld.GeographyQuestions(Knowledge, city, random), TextWorld.HistoryQuestion(Knowledge, city, random)];

    /// <summary>An arithmetic fact from the knowledge base's distribution that is not held out.</summary>
    public ArithmeticFact TrainingArithmetic(SeededRandom random)
    {
        while (true)
        {
            var fact = TextWorld.NewArithmeticFact(random);
            if (!IsHeldOut(fact)) return fact;
        }
    }

    /// <summary>The kinds of training document and how often each is drawn (weights out of 100).</summary>
    public static readonly IReadOnlyList<(string Kind, int Weight)> DocumentMix =
    [
        ("statements", 30), ("free-questions", 20), ("mmlu", 6), ("choice-chain", 10),
        ("arithmetic", 10), ("chat", 8), ("shapes", 13), ("scienceqa", 3),
    ];

    /// <summary>One training document, drawn from <see cref="DocumentMix"/>.</summary>
    public string NextDocument(SeededRandom random)
    {
        ArgumentNullException.ThrowIfNull(random);
        int pick = random.Next(DocumentMix.Sum(m => m.Weight));
        string kind = DocumentMix.First(m => (pick -= m.Weight) < 0).Kind;
        return kind switch
        {
            "statements" => Statements(random),
            "free-questions" => FreeQuestions(random),
            "mmlu" => Mmlu(random),
            "choice-chain" => ChoiceChain(random),
            "arithmetic" => Arithmetic(random),
            "chat" => Chat(random),
            "shapes" => ShapesText(random),
            _ => ScienceQa(random),
        };
    }

    /// <summary>One to three cities' facts, each fact in one of several phrasings, in shuffled order.</summary>
    private string Statements(SeededRandom random)
    {
        var text = new StringBuilder();
        int cities = random.Between(1, 3);
        for (int i = 0; i < cities; i++)
        {
            var c = random.Pick(Knowledge.Cities);
            if (random.Chance(0.2))
            {
                text.Append(c.Statement()).Append('\n');
                continue;
            }
            var facts = new List<string>
            {
                random.Pick<string>([$"{c.Name} is a city in {c.Country}.", $"{c.Name} lies in {c.Country}.", $"The city of {c.Name} is in {c.Country}."]),
                random.Pick<string>([$"The {c.River} flows through {c.Name}.", $"{c.Name} stands on the {c.River}.", $"The river of {c.Name} is the {c.River}."]),
                random.Pick<string>([$"{c.Name} was founded in {c.Founded}.", $"The founding year of {c.Name} is {c.Founded}.", $"{c.Name} dates from {c.Founded}."]),
                random.Pick<string>([$"{c.Name} is known for its {c.KnownFor}.", $"People know {c.Name} for its {c.KnownFor}.", $"The {c.KnownFor} of {c.Name} is famous."]),
            };
            random.Shuffle(facts);
            text.Append(string.Join(" ", facts)).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>A question about a city that free questions may ask (drilled and questioned cities), with its short and long answers.</summary>
    private (string Question, string Short, string Long) CityFact(SeededRandom random) =>
        random.Pick(CityQuestionsInWords(random.Pick(random.Chance(0.5) || QuestionCities.Count == 0 ? DrillCities : QuestionCities)));

    /// <summary>The four free questions about a city, each with its short answer and a sentence answering it.</summary>
    private static List<(string Question, string Short, string Long)> CityQuestionsInWords(City c) =>
    [
        ($"In which country is {c.Name}?", c.Country, $"{c.Name} is in {c.Country}."),
        ($"Which river flows through {c.Name}?", c.River, $"The {c.River} flows through {c.Name}."),
        ($"When was {c.Name} founded?", c.Founded.ToString(CultureInfo.InvariantCulture), $"{c.Name} was founded in {c.Founded}."),
        ($"What is {c.Name} known for?", c.KnownFor, $"{c.Name} is known for its {c.KnownFor}."),
    ];

    /// <summary>The harness's free-answer transcript: "Question: q\nAnswer: a\n\n", one to four pairs.</summary>
    private string FreeQuestions(SeededRandom random)
    {
        var text = new StringBuilder();
        int pairs = random.Between(1, 4);
        for (int i = 0; i < pairs; i++)
        {
            int kind = random.Next(5);
            var (question, answer) = kind < 3 ? CityAnswer(random, shortAnswer: true) : kind == 3 ? ArithmeticAnswer(random, equation: false) : ShapesQuestion(random);
            text.Append("Question: ").Append(question).Append("\nAnswer: ").Append(answer).Append("\n\n");
        }
        return text.ToString();
    }

    private (string Question, string Answer) CityAnswer(SeededRandom random, bool shortAnswer)
    {
        var (question, shortForm, longForm) = CityFact(random);
        return (question, shortAnswer ? shortForm : longForm);
    }

    /// <summary>"What is a op b?" answered with the result, or with the whole equation.</summary>
    private (string Question, string Answer) ArithmeticAnswer(SeededRandom random, bool equation)
    {
        var f = TrainingArithmetic(random);
        string result = f.Result.ToString(CultureInfo.InvariantCulture);
        return ($"What is {f.Expression}?", equation ? $"{f.Expression} = {result}." : result);
    }

    /// <summary>A drilled city's or training arithmetic's four-option question.</summary>
    private MmluQuestion TrainingChoice(SeededRandom random, string? subject = null)
    {
        subject ??= random.Pick(TextWorld.Subjects);
        if (subject == "arithmetic") return TextWorld.ArithmeticQuestion(TrainingArithmetic(random), random);
        var c = random.Pick(DrillCities);
        return subject == "world_history" ? TextWorld.HistoryQuestion(Knowledge, c, random) : random.Pick(TextWorld.GeographyQuestions(Knowledge, c, random));
    }

    /// <summary>Few shots keep documents short; five, the harness's default, still occur.</summary>
    private static readonly int[] ShotCounts = [0, 0, 1, 1, 2, 3, 5];

    /// <summary>Hendrycks' prompt with 0 to 5 shots of the same subject, answered.</summary>
    private string Mmlu(SeededRandom random)
    {
        var question = TrainingChoice(random);
        int shots = random.Pick(ShotCounts);
        var dev = Enumerable.Range(0, shots).Select(_ => TrainingChoice(random, question.Subject)).ToList();
        return MmluPrompt.Build(question, dev, shots) + " " + question.AnswerLetter + "\n";
    }

    /// <summary>The interleaved benchmark's layout: one to four choice questions, each answered, with no header.</summary>
    private string ChoiceChain(SeededRandom random)
    {
        var text = new StringBuilder();
        int turns = random.Between(1, 4);
        for (int i = 0; i < turns; i++)
        {
            double kind = random.NextDouble();
            if (kind < 0.2) AppendToldFact(text, random);
            else if (kind < 0.5)
            {
                var (question, choices, answer) = ShapesChoice(random);
                AppendChoice(text, question, choices, answer);
            }
            else
            {
                var q = TrainingChoice(random);
                AppendChoice(text, q.Question, q.Choices, q.Answer);
            }
        }
        return text.ToString();
    }

    /// <summary>A drilled city's statement followed by one of its choice questions, answered.</summary>
    private void AppendToldFact(StringBuilder text, SeededRandom random)
    {
        var c = random.Pick(DrillCities);
        var q = random.Pick(TextWorld.GeographyQuestions(Knowledge, c, random));
        AppendChoice(text, c.Statement() + "\n" + q.Question, q.Choices, q.Answer);
    }

    /// <summary>"{question}\nA. ..\nB. ..\nAnswer: X\n\n", the layout of <c>ChoiceQuestion.Render</c> with its answer.</summary>
    private static void AppendChoice(StringBuilder text, string question, IReadOnlyList<string> choices, int answer)
    {
        text.Append(question);
        for (int j = 0; j < choices.Count; j++) text.Append('\n').Append((char)('A' + j)).Append(". ").Append(choices[j]);
        text.Append("\nAnswer: ").Append((char)('A' + answer)).Append("\n\n");
    }

    /// <summary>Training arithmetic as equations or as questions.</summary>
    private string Arithmetic(SeededRandom random)
    {
        var text = new StringBuilder();
        int lines = random.Between(2, 6);
        bool asQuestions = random.Chance(0.5);
        for (int i = 0; i < lines; i++)
        {
            var (question, answer) = ArithmeticAnswer(random, equation: !asQuestions);
            if (asQuestions) text.Append("Question: ").Append(question).Append("\nAnswer: ").Append(answer).Append("\n\n");
            else text.Append(answer).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>One to three ChatML exchanges about facts, arithmetic or a described scene.</summary>
    private string Chat(SeededRandom random)
    {
        var text = new StringBuilder();
        int turns = random.Between(1, 3);
        for (int i = 0; i < turns; i++)
        {
            int kind = random.Next(3);
            var (question, answer) = kind == 0 ? CityAnswer(random, shortAnswer: false) : kind == 1 ? ArithmeticAnswer(random, equation: true) : ShapesQuestion(random);
            text.Append("<|im_start|>user\n").Append(question).Append("<|im_end|>\n<|im_start|>assistant\n").Append(answer).Append("<|im_end|>\n");
        }
        return text.ToString();
    }

    /// <summary>Scenes in words: a description with its questions in the free-answer or the choice layout.</summary>
    private string ShapesText(SeededRandom random)
    {
        if (random.Chance(0.3)) return ShapesWorld.Describe(ShapesWorld.NewScene(random, Parameters.Shapes)) + "\n";
        var text = new StringBuilder();
        int questions = random.Between(1, 3);
        for (int i = 0; i < questions; i++)
        {
            if (random.Chance(0.5))
            {
                var (question, answer) = ShapesQuestion(random);
                text.Append("Question: ").Append(question).Append("\nAnswer: ").Append(answer).Append("\n\n");
            }
            else
            {
                var (question, choices, correct) = ShapesChoice(random);
                AppendChoice(text, question, choices, correct);
            }
        }
        return text.ToString();
    }

    /// <summary>LaVIN's ScienceQA prompt for a scene told in the hint (or a general question with none), answered "The answer is X."</summary>
    private string ScienceQa(SeededRandom random)
    {
        var scene = ShapesWorld.NewScene(random, Parameters.Shapes);
        bool general = random.Chance(0.15);
        var question = general ? ShapesWorld.Ask(scene, ShapesQuestionKind.General, random) : ShapesWorld.Ask(scene, random.Pick(ShapesWorld.AnswerableKinds(scene)), random);
        var problem = new ScienceQaProblem("demo", question.Text, question.Choices, question.AnswerIndex, general ? "" : ShapesWorld.Describe(scene), null,
            "natural science", 1, "", "", "train", "shapes", "", "", "closed choice");
        return $"{problem.Prompt()} The answer is {problem.AnswerLetter}.\n";
    }

    /// <summary>A described scene's question as the free-answer harness asks it of an image: the description where the image would be.</summary>
    private (string Question, string Answer) ShapesQuestion(SeededRandom random)
    {
        var scene = ShapesWorld.NewScene(random, Parameters.Shapes);
        var question = ShapesWorld.Ask(scene, random.Pick(ShapesWorld.AnswerableKinds(scene)), random);
        return ($"{ShapesWorld.Describe(scene)}\n{question.Text}", question.Answer);
    }

    /// <summary>A described scene's choice question (2 to 5 options), the description first.</summary>
    private (string Question, IReadOnlyList<string> Choices, int Answer) ShapesChoice(SeededRandom random)
    {
        var scene = ShapesWorld.NewScene(random, Parameters.Shapes);
        var question = ShapesWorld.Ask(scene, random.Pick(ShapesWorld.AnswerableKinds(scene)), random);
        return ($"{ShapesWorld.Describe(scene)}\n{question.Text}", question.Choices, question.AnswerIndex);
    }
}
