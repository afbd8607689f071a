using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Graft.Data;

/// <summary>A fictional city and its facts.</summary>
public sealed record City(string Name, string Country, string River, int Founded, string KnownFor)
{
    /// <summary>"Velmor is a city in Ostria. Its river is the Kell. It was founded in 1203. It is known for its glass."</summary>
    public string Statement() => $"{Name} is a city in {Country}. Its river is the {River}. It was founded in {Founded}. It is known for its {KnownFor}.";
}

/// <summary>An arithmetic fact: Left Op Right = Result, with Op one of + - *.</summary>
public sealed record ArithmeticFact(int Left, char Op, int Right)
{
    public int Result => Op switch { '+' => Left + Right, '-' => Left - Right, _ => Left * Right };

    public string Expression => $"{Left} {Op} {Right}";
}

/// <summary>The generated knowledge base: the countries, rivers and goods that exist, and the cities that use them.</summary>
public sealed record KnowledgeBase(
    IReadOnlyList<string> Countries, IReadOnlyList<string> Rivers, IReadOnlyList<string> Goods,
    IReadOnlyList<City> Cities, IReadOnlyList<ArithmeticFact> Arithmetic);

/// <summary>
/// The text world for a small base model: fictional cities with facts, and arithmetic. Written as a
/// plain-text corpus (pre-training), Alpaca JSON (question-answer instruction data), and MMLU-style
/// four-option questions in the Hendrycks CSV layout (subjects world_geography, world_history and
/// arithmetic), whose distractors are other values of the same attribute.
/// </summary>
public static class TextWorld
{
    private static readonly string[] Syllables =
        ["vel", "mor", "os", "tri", "kel", "tan", "bri", "dun", "sha", "lo", "rem", "qua", "fen", "dar", "is", "ul",
         "zan", "tor", "mi", "ka", "pel", "gor", "ve", "ny", "ar", "bel", "cor", "dra", "el", "hal", "ith", "jor"];

    public static readonly IReadOnlyList<string> AllGoods =
        ["glass", "wool", "salt", "copper", "silk", "cheese", "paper", "timber", "honey", "pottery", "wine", "iron"];

    public static readonly IReadOnlyList<string> Subjects = ["arithmetic", "world_geography", "world_history"];

    public static KnowledgeBase NewKnowledgeBase(SeededRandom random, int cities)
    {
        if (cities is < 4 or > 1000) throw new ArgumentOutOfRangeException(nameof(cities), $"{cities} cities; the text world makes 4 to 1000");
        var used = new HashSet<string>(StringComparer.Ordinal);
        var countries = Names(random, used, Math.Max(4, cities / 8), 2, "ia");
        var rivers = Names(random, used, Math.Max(4, cities / 3), 1, "");
        var years = new HashSet<int>();
        var result = new List<City>(cities);
        foreach (var name in Names(random, used, cities, 2, ""))
        {
            int year;
            do year = random.Between(900, 1899); while (!years.Add(year));
            result.Add(new City(name, random.Pick(countries), random.Pick(rivers), year, random.Pick(AllGoods)));
        }
        var arithmetic = new List<ArithmeticFact>(cities);
        for (int i = 0; i < cities; i++) arithmetic.Add(NewArithmeticFact(random));
        return new KnowledgeBase(countries, rivers, AllGoods, result, arithmetic);
    }

    /// <summary>One of + - * drawn evenly; products of 0..12, sums and differences of 0..9 or 0..99 (even odds); no negative results.</summary>
    public static ArithmeticFact NewArithmeticFact(SeededRandom random)
    {
        char op = "+-*"[random.Next(3)];
        int limit = op == '*' ? 12 : random.Chance(0.5) ? 9 : 99;
        int a = random.Between(0, limit), b = random.Between(0, limit);
        return op == '-' && b > a ? new ArithmeticFact(b, op, a) : new ArithmeticFact(a, op, b);
    }

    /// <summary>Distinct capitalised names of <paramref name="syllables"/> or one more syllable, plus a suffix.</summary>
    private static List<string> Names(SeededRandom random, HashSet<string> used, int count, int syllables, string suffix)
    {
        var names = new List<string>(count);
        while (names.Count < count)
        {
            var name = new StringBuilder();
            int parts = syllables + random.Next(2);
            for (int i = 0; i < parts; i++) name.Append(random.Pick(Syllables));
            name.Append(suffix);
            name[0] = char.ToUpperInvariant(name[0]);
            if (used.Add(name.ToString())) names.Add(name.ToString());
        }
        return names;
    }

    /// <summary>Question-answer pairs in words, two per city fact and one per arithmetic fact.</summary>
    public static IEnumerable<(string Question, string Answer)> QuestionAnswers(KnowledgeBase kb)
    {
        foreach (var c in kb.Cities)
        {
            yield return ($"In which country is {c.Name}?", $"{c.Name} is in {c.Country}.");
            yield return ($"Which river flows through {c.Name}?", $"The {c.River} flows through {c.Name}.");
            yield return ($"When was {c.Name} founded?", $"{c.Name} was founded in {c.Founded}.");
            yield return ($"What is {c.Name} known for?", $"{c.Name} is known for its {c.KnownFor}.");
        }
        foreach (var f in kb.Arithmetic)
            yield return ($"What is {f.Expression}?", f.Result.ToString(CultureInfo.InvariantCulture));
    }

    /// <summary>Every four-option question of one subject, in knowledge-base order.</summary>
    public static List<MmluQuestion> MultipleChoice(KnowledgeBase kb, string subject, SeededRandom random) => subject switch
    {
        "world_geography" => kb.Cities.SelectMany(c => GeographyQuestions(kb, c, random)).ToList(),
        "world_history" => kb.Cities.Select(c => HistoryQuestion(kb, c, random)).ToList(),
        "arithmetic" => kb.Arithmetic.Select(f => ArithmeticQuestion(f, random)).ToList(),
        _ => throw new ArgumentException($"unknown text-world subject \"{subject}\" (have {string.Join(", ", Subjects)})", nameof(subject)),
    };

    /// <summary>A city's three world_geography questions: its country, its river, what it is known for.</summary>
    public static List<MmluQuestion> GeographyQuestions(KnowledgeBase kb, City c, SeededRandom random) =>
    [
        Choose("world_geography", $"{c.Name} is a city in which country?", c.Country, kb.Countries, random),
        Choose("world_geography", $"Which river flows through {c.Name}?", c.River, kb.Rivers, random),
        Choose("world_geography", $"What is {c.Name} known for?", c.KnownFor, kb.Goods, random),
    ];

    /// <summary>A city's world_history question: its founding year among other cities' years.</summary>
    public static MmluQuestion HistoryQuestion(KnowledgeBase kb, City c, SeededRandom random) =>
        Choose("world_history", $"In which year was {c.Name} founded?", c.Founded.ToString(CultureInfo.InvariantCulture),
            kb.Cities.Select(other => other.Founded.ToString(CultureInfo.InvariantCulture)).ToList(), random);

    /// <summary>An arithmetic question whose distractors are within 10 of the result (and not negative).</summary>
    public static MmluQuestion ArithmeticQuestion(ArithmeticFact f, SeededRandom random)
    {
        var near = new HashSet<int>();
        while (near.Count < 3)
        {
            int candidate = f.Result + random.Between(-10, 10);
            if (candidate != f.Result && candidate >= 0) near.Add(candidate);
        }
        var pool = near.Order().Select(n => n.ToString(CultureInfo.InvariantCulture)).ToList();
        return Choose("arithmetic", $"What is {f.Expression}?", f.Result.ToString(CultureInfo.InvariantCulture), pool, random);
    }

    private static MmluQuestion Choose(string subject, string question, string answer, IReadOnlyList<string> pool, SeededRandom random)
    {
        var others = pool.Where(p => p != answer).Distinct().ToList();
        random.Shuffle(others);
        var choices = others.Take(3).Append(answer).ToList();
        random.Shuffle(choices);
        return new MmluQuestion(subject, question, choices, choices.IndexOf(answer));
    }

    /// <summary>Top-level names <see cref="Write"/> produces.</summary>
    public static readonly IReadOnlyList<string> OutputNames = ["corpus.txt", "alpaca.json", "knowledge.json", "mmlu"];

    /// <summary>
    /// Writes a knowledge base of <paramref name="count"/> cities and as many arithmetic facts:
    /// corpus.txt (every statement, shuffled, one per line), alpaca.json (every question-answer pair),
    /// knowledge.json (the facts themselves) and mmlu/{dev,val,test}/{subject}_{split}.csv, where per
    /// subject the first 5 shuffled questions are dev, a fifth of the rest val, and the remainder test.
    /// </summary>
    public static void Write(DataOutput output, int count, ulong seed)
    {
        var random = new SeededRandom(seed);
        var kb = NewKnowledgeBase(random, count);

        var lines = kb.Cities.Select(c => c.Statement()).Concat(kb.Arithmetic.Select(f => $"{f.Expression} = {f.Result}.")).ToList();
        random.Shuffle(lines);
        output.WriteText("corpus.txt", string.Join("\n", lines) + "\n");

        output.WriteJson("alpaca.json", w =>
        {
            w.WriteStartArray();
            foreach (var (question, answer) in QuestionAnswers(kb))
            {
                w.WriteStartObject();
                w.WriteString("instruction", question);
                w.WriteString("input", "");
                w.WriteString("output", answer);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });

        output.WriteJson("knowledge.json", w => WriteKnowledge(w, kb));

        foreach (var subject in Subjects)
        {
            var questions = MultipleChoice(kb, subject, random);
            random.Shuffle(questions);
            int dev = Math.Min(5, questions.Count), val = (questions.Count - dev) / 5;
            WriteCsv(output, "dev", subject, questions.Take(dev));
            WriteCsv(output, "val", subject, questions.Skip(dev).Take(val));
            WriteCsv(output, "test", subject, questions.Skip(dev + val));
        }
    }

    private static void WriteCsv(DataOutput output, string split, string subject, IEnumerable<MmluQuestion> questions) =>
        output.WriteText($"mmlu/{split}/{subject}_{split}.csv", MmluReader.ToCsv(questions));

    private static void WriteKnowledge(Utf8JsonWriter w, KnowledgeBase kb)
    {
        w.WriteStartObject();
        WriteStrings(w, "countries", kb.Countries);
        WriteStrings(w, "rivers", kb.Rivers);
        WriteStrings(w, "goods", kb.Goods);
        w.WriteStartArray("cities");
        foreach (var c in kb.Cities)
        {
            w.WriteStartObject();
            w.WriteString("name", c.Name);
            w.WriteString("country", c.Country);
            w.WriteString("river", c.River);
            w.WriteNumber("founded", c.Founded);
            w.WriteString("known_for", c.KnownFor);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("arithmetic");
        foreach (var f in kb.Arithmetic)
        {
            w.WriteStartObject();
            w.WriteString("expression", f.Expression);
            w.WriteNumber("result", f.Result);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteStrings(Utf8JsonWriter w, string name, IEnumerable<string> items)
    {
        w.WriteStartArray(name);
        foreach (var item in items) w.WriteStringValue(item);
        w.WriteEndArray();
    }
}
