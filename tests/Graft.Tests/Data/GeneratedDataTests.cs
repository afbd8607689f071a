using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Graft.Data;
using Graft.Models.Imaging;

namespace Graft.Tests.Data;

/// <summary>A temporary folder removed after the test class.</summary>
public sealed class TempFolder : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("graft-data-").FullName;

    public string Sub(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose() => Directory.Delete(Path, recursive: true);

    /// <summary>SHA-256 over every file's relative path and bytes, in ordinal path order.</summary>
    public static string Hash(string folder)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var file in Directory.GetFiles(folder, "*", SearchOption.AllDirectories)
                     .Select(f => System.IO.Path.GetRelativePath(folder, f).Replace('\\', '/')).Order(StringComparer.Ordinal))
        {
            sha.AppendData(Encoding.UTF8.GetBytes(file + "\0"));
            sha.AppendData(File.ReadAllBytes(System.IO.Path.Combine(folder, file)));
        }
        return Convert.ToHexString(sha.GetHashAndReset());
    }
}

public class ShapesWorldTests : IClassFixture<TempFolder>
{
    private const int Count = 40;
    private readonly string folder;

    public ShapesWorldTests(TempFolder temp)
    {
        folder = temp.Sub("shapes-7");
        if (!Directory.Exists(folder)) Make(folder, seed: 7);
    }

    private static void Make(string path, ulong seed, bool force = false) =>
        ShapesWorld.Write(new DataOutput(path, force, ShapesWorld.OutputNames), Count, seed, new ShapesWorldOptions());

    [Fact]
    public void SameSeed_ByteIdentical_OtherSeed_Different()
    {
        string again = folder + "-again", other = folder + "-other";
        Make(again, seed: 7);
        Make(other, seed: 8);
        Assert.Equal(TempFolder.Hash(folder), TempFolder.Hash(again));
        Assert.NotEqual(TempFolder.Hash(folder), TempFolder.Hash(other));
    }

    [Fact]
    public void Output_RefusesANonEmptyFolderUnlessForced_AndForceLeavesNoStaleFiles()
    {
        string path = folder + "-force";
        Make(path, seed: 7);
        Assert.Throws<IOException>(() => Make(path, seed: 7));
        File.WriteAllText(Path.Combine(path, "images", "stale.png"), "old");
        Make(path, seed: 7, force: true);
        Assert.Equal(TempFolder.Hash(folder), TempFolder.Hash(path));
        Assert.Empty(Directory.GetFiles(path, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void Pngs_DecodeAndShowEachShapesColourAtItsCentre()
    {
        using var scenes = Scenes();
        foreach (var scene in scenes.RootElement.EnumerateArray())
        {
            var image = ImageDecoder.Load(Path.Combine(folder, "images", scene.GetProperty("id").GetString() + ".png"));
            Assert.Equal((64, 64), (image.Width, image.Height));
            foreach (var shape in scene.GetProperty("shapes").EnumerateArray())
            {
                var colour = ShapesWorld.Colours.Single(c => c.Name == shape.GetProperty("colour").GetString());
                int x = (int)shape.GetProperty("x").GetDouble(), y = (int)shape.GetProperty("y").GetDouble();
                int at = (y * image.Width + x) * 3;
                Assert.Equal((colour.R, colour.G, colour.B), (image.Pixels[at], image.Pixels[at + 1], image.Pixels[at + 2]));
            }
        }
    }

    [Fact]
    public void EveryAnswer_FollowsFromTheSceneDescription()
    {
        using var scenes = Scenes();
        int checkedQuestions = 0;
        foreach (var scene in scenes.RootElement.EnumerateArray())
        {
            var shapes = scene.GetProperty("shapes").EnumerateArray()
                .Select(s => (Shape: s.GetProperty("shape").GetString()!, Colour: s.GetProperty("colour").GetString()!, Position: s.GetProperty("position").GetString()!))
                .ToList();
            Assert.Equal(shapes.Count, shapes.Select(s => s.Position).Distinct().Count());
            foreach (var q in scene.GetProperty("questions").EnumerateArray().Append(scene.GetProperty("problem")))
            {
                string text = q.GetProperty("question").GetString()!, answer = q.GetProperty("answer").GetString()!;
                Assert.Equal(Recompute(text, shapes), answer);
                var choices = q.GetProperty("choices").EnumerateArray().Select(c => c.GetString()!).ToList();
                Assert.InRange(choices.Count, 2, 5);
                Assert.Equal(choices.Count, choices.Distinct().Count());
                Assert.Equal(answer, choices[q.GetProperty("answer_index").GetInt32()]);
                checkedQuestions++;
            }
        }
        Assert.True(checkedQuestions > 2 * Count);
    }

    /// <summary>The answer worked out from the listed shapes alone, independent of the generator's code.</summary>
    private static string Recompute(string question, List<(string Shape, string Colour, string Position)> shapes)
    {
        string[] counts = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
        if (Regex.Match(question, "^What colour is the (\\w+)\\?$") is { Success: true } colour)
            return shapes.Single(s => s.Shape == colour.Groups[1].Value).Colour;
        if (Regex.Match(question, "^What shape is at the ([\\w ]+)\\?$") is { Success: true } shape)
            return shapes.Single(s => s.Position == shape.Groups[1].Value).Shape;
        if (Regex.Match(question, "^How many (circle|square|triangle|diamond|cross)(es|s) are there\\?$") is { Success: true } count)
            return counts[shapes.Count(s => s.Shape == count.Groups[1].Value)];
        if (Regex.Match(question, "^Where is the (\\w+) (\\w+)\\?$") is { Success: true } where)
            return shapes.Single(s => s.Colour == where.Groups[1].Value && s.Shape == where.Groups[2].Value).Position;
        return question switch
        {
            "Which shape has three sides?" => "triangle",
            "Which shape has no corners?" => "circle",
            "Which shape looks like a plus sign?" => "cross",
            _ => throw new Xunit.Sdk.XunitException($"unexpected question: {question}"),
        };
    }

    [Fact]
    public void LlavaRecords_ReadBackAndMatchTheScenes()
    {
        using var scenes = Scenes();
        var json = LlavaReader.Read(Path.Combine(folder, "llava.json"), Path.Combine(folder, "images"));
        var jsonl = LlavaReader.Read(Path.Combine(folder, "llava.jsonl"), Path.Combine(folder, "images"));
        Assert.Equal(Count, json.Count);
        Assert.Equal(json.Select(Flatten), jsonl.Select(Flatten));
        foreach (var (record, scene) in json.Zip(scenes.RootElement.EnumerateArray()))
        {
            Assert.True(File.Exists(record.ImagePaths.Single()));
            var questions = scene.GetProperty("questions").EnumerateArray().ToList();
            Assert.Equal(2 * questions.Count, record.Turns.Count);
            for (int i = 0; i < questions.Count; i++)
            {
                Assert.EndsWith(questions[i].GetProperty("question").GetString()!, record.Turns[2 * i].Text);
                Assert.Equal(questions[i].GetProperty("answer").GetString(), record.Turns[2 * i + 1].Text);
                Assert.True(record.Turns[2 * i + 1].IsSupervised);
            }
        }
    }

    private static string Flatten(Conversation c) =>
        c.Id + "|" + string.Join("|", c.ImagePaths) + "|" + string.Join("|", c.Turns.Select(t => $"{t.Role}:{t.Text}"));

    [Fact]
    public void ScienceQaFolder_ReadsBackWithConsistentAnswersAndACompleteBreakdown()
    {
        using var scenes = Scenes();
        var byQid = scenes.RootElement.EnumerateArray().ToDictionary(s => s.GetProperty("qid").GetString()!);
        var data = ScienceQaDataset.Load(Path.Combine(folder, "scienceqa"));
        var breakdown = new ScienceQaBreakdown();
        int textAndImage = 0;
        foreach (var split in (string[])["train", "val", "test"])
            foreach (var problem in data.Split(split))
            {
                var expected = byQid[problem.Id].GetProperty("problem");
                Assert.Equal(expected.GetProperty("question").GetString(), problem.Question);
                Assert.Equal(expected.GetProperty("answer").GetString(), problem.Choices[problem.Answer]);
                Assert.Equal(split, problem.Split);
                Assert.Equal("NAT", problem.SubjectCode);
                Assert.Equal("G1-6", problem.GradeBand);
                Assert.EndsWith("Response:", problem.Prompt());
                Assert.StartsWith($"The answer is {problem.AnswerLetter}. BECAUSE: ", problem.Target());
                if (problem.ImagePath is { } image)
                    Assert.Equal(File.ReadAllBytes(Path.Combine(folder, "images", byQid[problem.Id].GetProperty("id").GetString() + ".png")), File.ReadAllBytes(image));
                if (problem.HasText && problem.HasImage) textAndImage++;
                breakdown.Add(problem, correct: problem.Answer == 0);
            }
        Assert.Equal(Count, breakdown.Total);
        Assert.Equal(breakdown.Total, breakdown["NAT"].Total + breakdown["SOC"].Total + breakdown["LAN"].Total);
        Assert.Equal(breakdown.Total, breakdown["G1-6"].Total + breakdown["G7-12"].Total);
        Assert.Equal(breakdown.Total, breakdown["TXT"].Total + breakdown["IMG"].Total + breakdown["NO"].Total - textAndImage);
        Assert.Equal(breakdown.Correct, breakdown["NAT"].Correct + breakdown["SOC"].Correct + breakdown["LAN"].Correct);
        Assert.All((string[])["TXT", "IMG", "NO"], c => Assert.True(breakdown[c].Total > 0, $"no {c} problems generated"));
        Assert.True(breakdown["TXT"].Total > textAndImage, "no text-only context problems generated");
    }

    private JsonDocument Scenes() => JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "scenes.json")));
}

public class TextWorldTests : IClassFixture<TempFolder>
{
    private const int Count = 60;
    private readonly string folder;

    public TextWorldTests(TempFolder temp)
    {
        folder = temp.Sub("text-3");
        if (!Directory.Exists(folder)) Make(folder, seed: 3);
    }

    private static void Make(string path, ulong seed) => TextWorld.Write(new DataOutput(path, false, TextWorld.OutputNames), Count, seed);

    [Fact]
    public void SameSeed_ByteIdentical_OtherSeed_Different()
    {
        Make(folder + "-again", seed: 3);
        Make(folder + "-other", seed: 4);
        Assert.Equal(TempFolder.Hash(folder), TempFolder.Hash(folder + "-again"));
        Assert.NotEqual(TempFolder.Hash(folder), TempFolder.Hash(folder + "-other"));
    }

    [Fact]
    public void MmluCsvs_ReadBackWithAnswersTrueToTheKnowledgeBase()
    {
        using var kb = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "knowledge.json")));
        var cities = kb.RootElement.GetProperty("cities").EnumerateArray().ToDictionary(c => c.GetProperty("name").GetString()!);
        var arithmetic = kb.RootElement.GetProperty("arithmetic").EnumerateArray()
            .ToLookup(a => a.GetProperty("expression").GetString()!, a => a.GetProperty("result").GetInt32().ToString());
        int total = 0;
        foreach (var split in (string[])["dev", "val", "test"])
        {
            var subjects = MmluReader.ReadSplit(Path.Combine(folder, "mmlu"), split);
            Assert.Equal(TextWorld.Subjects, subjects.Keys);
            if (split == "dev") Assert.All(subjects.Values, questions => Assert.Equal(5, questions.Count));
            foreach (var q in subjects.Values.SelectMany(x => x))
            {
                string answer = q.Choices[q.Answer];
                Assert.Equal(4, q.Choices.Distinct().Count());
                string expected = Regex.Match(q.Question, "^(\\w+) is a city in which country\\?$") is { Success: true } m1 ? Field(m1, "country")
                    : Regex.Match(q.Question, "^Which river flows through (\\w+)\\?$") is { Success: true } m2 ? Field(m2, "river")
                    : Regex.Match(q.Question, "^What is (\\w+) known for\\?$") is { Success: true } m3 ? Field(m3, "known_for")
                    : Regex.Match(q.Question, "^In which year was (\\w+) founded\\?$") is { Success: true } m4 ? Field(m4, "founded")
                    : Regex.Match(q.Question, "^What is (\\d+) ([-+*]) (\\d+)\\?$") is { Success: true } m5 ? Arithmetic(m5)
                    : throw new Xunit.Sdk.XunitException($"unexpected question: {q.Question}");
                Assert.Equal(expected, answer);
                if (q.Subject == "arithmetic") Assert.Contains(answer, arithmetic[Regex.Match(q.Question, "\\d+ . \\d+").Value]);
                total++;
            }
        }
        Assert.Equal(Count * 3 + Count + Count, total);

        string Field(Match m, string field) => cities[m.Groups[1].Value].GetProperty(field) is var v && v.ValueKind == JsonValueKind.Number
            ? v.GetInt32().ToString() : v.GetString()!;
    }

    private static string Arithmetic(Match m)
    {
        int a = int.Parse(m.Groups[1].Value), b = int.Parse(m.Groups[3].Value);
        return (m.Groups[2].Value switch { "+" => a + b, "-" => a - b, _ => a * b }).ToString();
    }

    [Fact]
    public void AlpacaAndCorpus_CarryEveryFact()
    {
        var examples = AlpacaReader.Read(Path.Combine(folder, "alpaca.json"));
        Assert.Equal(Count * 4 + Count, examples.Count);
        string corpus = File.ReadAllText(Path.Combine(folder, "corpus.txt"));
        using var kb = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "knowledge.json")));
        foreach (var c in kb.RootElement.GetProperty("cities").EnumerateArray())
        {
            string name = c.GetProperty("name").GetString()!;
            Assert.Contains($"{name} is a city in {c.GetProperty("country").GetString()}. Its river is the {c.GetProperty("river").GetString()}. "
                + $"It was founded in {c.GetProperty("founded").GetInt32()}.", corpus);
            Assert.Contains(examples, e => e.Instruction == $"When was {name} founded?" && e.Output == $"{name} was founded in {c.GetProperty("founded").GetInt32()}.");
        }
        Assert.All(examples, e => Assert.EndsWith("### Response:", e.Prompt()));
    }
}
