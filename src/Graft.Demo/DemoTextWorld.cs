using System.Globalization;
using System.Text;
using Graft.Data;

namespace Graft.Demo;

/// <summary>
/// What fixes the demo's worlds: the knowledge base (seed and size) and the shapes scenes whose descriptions the base
/// model reads. The demo regenerates the same knowledge base and test questions from these values alone.
/// </summary>
public sealed record DemoWorldParameters
{
    public ulong Seed { get; init; } = 1;

    /// <summary>Cities in the knowledge base, and as many arithmetic facts.</summary>
    public int Cities { get; init; } = 24;

    /// <summary>Shapes scenes described in words, as the demo's images are drawn.</summary>
    public ShapesWorldOptions Shapes { get; init; } = new();

    public void Validate()
    {
        if (Cities is < 4 or > 1000) throw new ArgumentOutOfRangeException(nameof(Cities), Cities, "the text world makes 4 to 1000 cities");
    }
}

/// <summary>Four-option test questions of one kind, with five training questions per subject as their few-shot examples.</summary>
public sealed record TestSet(string Name, string Description, IReadOnlyList<MmluQuestion> Questions, IReadOnlyList<MmluQuestion> Shots);

/// <summary>Free test questions of one kind with their short answers, asked as the harness asks ("Question: q\nAnswer:").</summary>
public sealed record FreeTestSet(string Name, string Description, IReadOnlyList<(string Question, string Answer)> Items);

/// <summary>
/// The text the demo's base model is trained on and the questions it is tested with. The base is taught every fact of
/// a small knowledge base (cities' countries, rivers, goods and founding years, and a list of arithmetic facts) in
/// statements, question-answer transcripts and four-option drills. The tests ask every one of those facts again, as a
/// free question ("Question: In which country is Velul?\nAnswer:", answered with the short answer training teaches)
/// and as a four-option question whose option order training never shows. So they measure what the base knows, in the
/// formats a plug-in must keep, not whether a tiny model generalises to facts it was never told.
/// </summary>
/// <remarks>
/// Formats are the ones the evaluation harness and the plug-ins use: Hendrycks' k-shot MMLU prompts, the harness's
/// "Question: ..\nAnswer: .." transcripts, and the interleaved benchmark's zero-shot choice chains. Shapes scenes are
/// told in words exactly where an image would stand ("Question: {description}\n{question}"), so a plug-in only has to
/// make its image read like the description the base already understands.
/// </remarks>
public sealed class DemoTextWorld
{
    private readonly HashSet<string> _testQuestions;

    public DemoTextWorld(DemoWorldParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        parameters.Validate();
        Parameters = parameters;
        Knowledge = TextWorld.NewKnowledgeBase(new SeededRandom(parameters.Seed), parameters.Cities);
        Arithmetic = Knowledge.Arithmetic.DistinctBy(f => f.Expression).ToList();

        // Test questions come from their own generator, so they do not depend on how much training text is drawn.
        var questions = new SeededRandom(parameters.Seed ^ 0x5EED_0F_7E57UL);
        var facts = Knowledge.Cities.SelectMany(c => CityQuestions(c, questions)).ToList();
        var arithmetic = Arithmetic.Select(f => TextWorld.ArithmeticQuestion(f, questions)).ToList();
        _testQuestions = facts.Concat(arithmetic).Select(Key).ToHashSet(StringComparer.Ordinal);
        TestSets =
        [
            new("arithmetic", "the arithmetic facts training teaches, asked as four-option questions", arithmetic, Shots(questions, "arithmetic")),
            new("facts", "every city's country, river, goods and founding year, asked as four-option questions", facts,
                [.. Shots(questions, "world_geography"), .. Shots(questions, "world_history")]),
        ];
        FreeTestSets =
        [
            new("arithmetic", "the arithmetic facts training teaches, answered with the number", Arithmetic.Select(ArithmeticAnswer).ToList()),
            new("facts", "every city's country, river, founding year and goods, answered in a word", Knowledge.Cities.SelectMany(CityQuestionsInWords).ToList()),
        ];
    }

    public DemoWorldParameters Parameters { get; }
    public KnowledgeBase Knowledge { get; }

    /// <summary>The arithmetic facts training teaches (the knowledge base's, without repeats).</summary>
    public IReadOnlyList<ArithmeticFact> Arithmetic { get; }

    /// <summary>The four-option test sets by name: arithmetic, facts.</summary>
    public IReadOnlyList<TestSet> TestSets { get; }

    /// <summary>The free-answer test sets by name: arithmetic, facts (the same facts as <see cref="TestSets"/>).</summary>
    public IReadOnlyList<FreeTestSet> FreeTestSets { get; }

    /// <summary>Folders of <see cref="WriteTestSets"/>: MMLU layouts under choice/, LLaVA JSON files under free/.</summary>
    public const string ChoiceFolder = "choice";
    public const string FreeFolder = "free";

    /// <summary>Whether training text may contain this question: not when it is a test question, options in the same order.</summary>
    public bool IsTestQuestion(MmluQuestion question) => _testQuestions.Contains(Key(question));

    private static string Key(MmluQuestion question) => string.Join('\u001f', [question.Question, .. question.Choices]);

    /// <summary>
    /// Writes the choice sets as MMLU folders choice/NAME/{dev,test}/{subject}_{split}.csv (dev: the five few-shot examples
    /// per subject), for <c>graft eval --bench mmlu:FOLDER/choice/NAME</c>, and the free sets as LLaVA JSON without images,
    /// free/NAME.json, for <c>graft eval --bench llava:FOLDER/free/NAME.json</c>.
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
            LlavaWriter.WriteQuestionAnswers(output, $"{FreeFolder}/{set.Name}.json", set.Items.Select((item, i) => ($"{set.Name}-{i}", item.Question, item.Answer)));
    }

    private static void WriteCsv(DataOutput output, string path, IEnumerable<MmluQuestion> questions) =>
        output.WriteText(path, MmluReader.ToCsv(questions.ToList()));

    /// <summary>Five questions of a subject as training would draw them (none of them a test question).</summary>
    private List<MmluQuestion> Shots(SeededRandom random, string subject) =>
        Enumerable.Range(0, 5).Select(_ => TrainingChoice(random, subject)).ToList();

    private List<MmluQuestion> CityQuestions(City city, SeededRandom random) =>
        [.. TextWorld.GeographyQuestions(Knowledge, city, random), TextWorld.HistoryQuestion(Knowledge, city, random)];

    /// <summary>A four-option question on a taught fact, redrawn until it is not a test question.</summary>
    private MmluQuestion TrainingChoice(SeededRandom random, string? subject = null)
    {
        subject ??= random.Pick(TextWorld.Subjects);
        while (true)
        {
            var c = random.Pick(Knowledge.Cities);
            var question = subject switch
            {
                "arithmetic" => TextWorld.ArithmeticQuestion(random.Pick(Arithmetic), random),
                "world_history" => TextWorld.HistoryQuestion(Knowledge, c, random),
                _ => random.Pick(TextWorld.GeographyQuestions(Knowledge, c, random)),
            };
            if (!IsTestQuestion(question)) return question;
        }
    }

    /// <summary>The kinds of training document and how often each is drawn (weights out of 100).</summary>
    public static readonly IReadOnlyList<(string Kind, int Weight)> DocumentMix =
    [
        ("statements", 10), ("free-questions", 10), ("mmlu", 15), ("choice-chain", 10), ("arithmetic", 5), ("shapes", 50),
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
            "arithmetic" => ArithmeticLines(random),
            _ => ShapesText(random),
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

    /// <summary>The four free questions about a city with their short answers.</summary>
    private static List<(string Question, string Answer)> CityQuestionsInWords(City c) =>
    [
        ($"In which country is {c.Name}?", c.Country),
        ($"Which river flows through {c.Name}?", c.River),
        ($"When was {c.Name} founded?", c.Founded.ToString(CultureInfo.InvariantCulture)),
        ($"What is {c.Name} known for?", c.KnownFor),
    ];

    /// <summary>The harness's free-answer transcript: "Question: q\nAnswer: a\n\n", one to four pairs.</summary>
    private string FreeQuestions(SeededRandom random)
    {
        var text = new StringBuilder();
        int pairs = random.Between(1, 4);
        for (int i = 0; i < pairs; i++)
        {
            int kind = random.Next(4);
            var (question, answer) = kind < 2 ? random.Pick(CityQuestionsInWords(random.Pick(Knowledge.Cities)))
                : kind == 2 ? ArithmeticAnswer(random.Pick(Arithmetic)) : ShapesQuestion(random);
            text.Append("Question: ").Append(question).Append("\nAnswer: ").Append(answer).Append("\n\n");
        }
        return text.ToString();
    }

    private static (string Question, string Answer) ArithmeticAnswer(ArithmeticFact f) =>
        ($"What is {f.Expression}?", f.Result.ToString(CultureInfo.InvariantCulture));

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

    /// <summary>The interleaved benchmark's layout: one to four choice questions (facts or described scenes), each answered, with no header.</summary>
    private string ChoiceChain(SeededRandom random)
    {
        var text = new StringBuilder();
        int turns = random.Between(1, 4);
        for (int i = 0; i < turns; i++)
        {
            if (random.Chance(0.4))
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

    /// <summary>"{question}\nA. ..\nB. ..\nAnswer: X\n\n", the layout of <c>ChoiceQuestion.Render</c> with its answer.</summary>
    private static void AppendChoice(StringBuilder text, string question, IReadOnlyList<string> choices, int answer)
    {
        text.Append(question);
        for (int j = 0; j < choices.Count; j++) text.Append('\n').Append((char)('A' + j)).Append(". ").Append(choices[j]);
        text.Append("\nAnswer: ").Append((char)('A' + answer)).Append("\n\n");
    }

    /// <summary>Taught arithmetic as equations or as questions.</summary>
    private string ArithmeticLines(SeededRandom random)
    {
        var text = new StringBuilder();
        int lines = random.Between(2, 6);
        bool asQuestions = random.Chance(0.5);
        for (int i = 0; i < lines; i++)
        {
            var f = random.Pick(Arithmetic);
            var (question, answer) = ArithmeticAnswer(f);
            if (asQuestions) text.Append("Question: ").Append(question).Append("\nAnswer: ").Append(answer).Append("\n\n");
            else text.Append(f.Expression).Append(" = ").Append(answer).Append(".\n");
        }
        return text.ToString();
    }

    /// <summary>
    /// A scene in words with every question it answers, in shuffled order, as the free-answer harness lays out a shapes
    /// conversation (the description where the image stands, later questions on the same scene with their answers as
    /// history); or, less often, one scene's choice question.
    /// </summary>
    private string ShapesText(SeededRandom random)
    {
        var text = new StringBuilder();
        if (random.Chance(0.2))
        {
            var (question, choices, correct) = ShapesChoice(random);
            AppendChoice(text, question, choices, correct);
            return text.ToString();
        }
        var scene = ShapesWorld.NewScene(random, Parameters.Shapes);
        var kinds = ShapesWorld.AnswerableKinds(scene);
        random.Shuffle(kinds);
        for (int i = 0; i < kinds.Count; i++)
        {
            var question = ShapesWorld.Ask(scene, kinds[i], random);
            text.Append("Question: ");
            if (i == 0) text.Append(ShapesWorld.Describe(scene)).Append('\n');
            text.Append(question.Text).Append("\nAnswer: ").Append(question.Answer).Append("\n\n");
        }
        return text.ToString();
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
