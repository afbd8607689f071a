using System.Text.Json;
using Graft.Data;
using Graft.Tests.Support;

namespace Graft.Tests.Data;

public class LlavaReaderTests
{
    private static string File(string name) => Path.Combine(GoldenCase.Folder("data"), "llava", name);

    [Fact]
    public void JsonArray_ReadsTurnsRolesImagesAndSupervision()
    {
        var records = LlavaReader.Read(File("conversations.json"), "/data/images");
        Assert.Equal(3, records.Count);

        var bus = records[0];
        Assert.Equal("000000033471", bus.Id);
        Assert.Equal([Path.Combine("/data/images", "coco/000000033471.jpg")], bus.ImagePaths);
        Assert.Equal([Role.User, Role.Assistant, Role.User, Role.Assistant], bus.Turns.Select(t => t.Role));
        Assert.Equal([1, 3], bus.SupervisedTurns);
        Assert.Equal([0], bus.Turns[0].ImageRefs);
        Assert.Empty(bus.Turns[2].ImageRefs);
        Assert.EndsWith("<image>", bus.Turns[0].Text);

        var textOnly = records[1];
        Assert.False(textOnly.HasImages);
        Assert.Equal([Role.System, Role.User, Role.Assistant], textOnly.Turns.Select(t => t.Role));
        Assert.Equal([2], textOnly.SupervisedTurns);
        Assert.False(textOnly.Turns[0].IsSupervised);
    }

    [Fact]
    public void ImageWithoutPlaceholder_GetsOnePrependedToTheFirstUserTurn()
    {
        var bare = LlavaReader.Read(File("conversations.json"), "img")[2];
        Assert.Equal("42", bare.Id);
        Assert.Equal("<image>\nWhat is shown?", bare.Turns[0].Text);
        Assert.Equal([0], bare.Turns[0].ImageRefs);
        Assert.Equal("A cat.", bare.Turns[1].Text);
    }

    [Fact]
    public void Jsonl_SkipsBlankLinesAndMapsSeveralImagesInOrder()
    {
        var records = LlavaReader.Read(File("conversations.jsonl"), "img");
        Assert.Equal(["a1", "t1", "m1"], records.Select(r => r.Id));
        Assert.Empty(records[1].ImagePaths);
        Assert.Equal([Path.Combine("img", "left.png"), Path.Combine("img", "right.png")], records[2].ImagePaths);
        Assert.Equal([0, 1], records[2].Turns[0].ImageRefs);
    }

    [Fact]
    public void BadJsonl_NamesTheLine()
    {
        var e = Assert.Throws<DataFormatException>(() => LlavaReader.Read(File("bad_json.jsonl"), "img"));
        Assert.Equal("line 3", e.Location);
        Assert.Contains("invalid JSON", e.Problem);
        Assert.Equal(File("bad_json.jsonl"), e.FileName);
    }

    [Fact]
    public void BadJsonArray_NamesTheLine()
    {
        var e = Assert.Throws<DataFormatException>(() => LlavaReader.Read(File("bad_json.json"), "img"));
        Assert.Equal("line 7", e.Location);
    }

    [Fact]
    public void MorePlaceholdersThanImages_NamesTheRecordAndCounts()
    {
        var e = Assert.Throws<DataFormatException>(() => LlavaReader.Read(File("too_many_placeholders.json"), "img"));
        Assert.Equal("record 1 (id \"two_for_one\")", e.Location);
        Assert.Contains("2 <image> placeholder(s) for 1 image(s)", e.Problem);
    }

    [Fact]
    public void PlaceholderInTextOnlyRecord_IsAnError()
    {
        var e = Assert.Throws<DataFormatException>(() => LlavaReader.Read(File("placeholder_without_image.jsonl"), "img"));
        Assert.Equal("line 1", e.Location);
        Assert.Contains("1 <image> placeholder(s) for 0 image(s)", e.Problem);
    }

    [Fact]
    public void MissingValue_NamesTheLineAndField()
    {
        var e = Assert.Throws<DataFormatException>(() => LlavaReader.Read(File("missing_value.jsonl"), "img"));
        Assert.Equal("line 2", e.Location);
        Assert.Contains("conversations[0].value is missing", e.Problem);
    }

    [Fact]
    public void UnknownRole_IsNamed()
    {
        var e = Assert.Throws<DataFormatException>(() => LlavaReader.Read(File("bad_role.json"), "img"));
        Assert.Equal("record 0 (id \"r\")", e.Location);
        Assert.Contains("\"bot\"", e.Problem);
    }
}

public class ScienceQaReaderTests
{
    private static string Folder(string name) => Path.Combine(GoldenCase.Folder("data"), "scienceqa", name);

    [Fact]
    public void Load_ReadsProblemsSplitsAndImagePaths()
    {
        var data = ScienceQaDataset.Load(Folder("good"));
        Assert.Equal(["101", "102", "103"], data.Splits["test"]);
        Assert.Equal(["104"], data.Splits["minival"]);
        var test = data.Split("test");
        Assert.Equal(Path.Combine(Folder("good"), "images", "test", "101", "image.png"), test[0].ImagePath);
        Assert.True(System.IO.File.Exists(test[0].ImagePath));
        Assert.Null(test[1].ImagePath);
        Assert.Equal(1, test[1].Answer);
        Assert.Equal('B', test[1].AnswerLetter);
        Assert.Equal(7, test[1].Grade);
        Assert.Equal("Verb tense", test[1].Category);
    }

    [Fact]
    public void PromptAndTarget_MatchTheLavinFormatComputedInPython()
    {
        var data = ScienceQaDataset.Load(Folder("good"));
        using var expected = JsonDocument.Parse(System.IO.File.ReadAllText(Path.Combine(Folder("good"), "expected_lavin.json")));
        foreach (var entry in expected.RootElement.EnumerateObject())
        {
            var problem = data.Problems[entry.Name];
            Assert.Equal(entry.Value[0].GetString(), problem.Prompt());
            Assert.Equal(entry.Value[1].GetString(), problem.Target());
        }
        Assert.Equal("The answer is C.", data.Problems["103"].Target());
    }

    [Fact]
    public void Categories_FollowTheScienceQaScoringDefinitions()
    {
        var p = ScienceQaDataset.Load(Folder("good")).Problems;
        Assert.Equal(("NAT", "G1-6"), (p["101"].SubjectCode, p["101"].GradeBand));
        Assert.Equal(("LAN", "G7-12"), (p["102"].SubjectCode, p["102"].GradeBand));
        Assert.Equal("SOC", p["103"].SubjectCode);
        Assert.Equal((false, true, false), (p["101"].HasText, p["101"].HasImage, p["101"].NoContext));
        Assert.Equal((true, false, false), (p["102"].HasText, p["102"].HasImage, p["102"].NoContext));
        Assert.Equal((false, false, true), (p["103"].HasText, p["103"].HasImage, p["103"].NoContext));
        Assert.Equal((true, true, false), (p["104"].HasText, p["104"].HasImage, p["104"].NoContext));

        var breakdown = new ScienceQaBreakdown();
        foreach (var problem in p.Values) breakdown.Add(problem, correct: problem.Id != "102");
        Assert.Equal((3, 4), (breakdown.Correct, breakdown.Total));
        Assert.Equal((2, 2), breakdown["NAT"]);
        Assert.Equal((0, 1), breakdown["LAN"]);
        Assert.Equal((1, 2), breakdown["TXT"]);
        Assert.Equal((2, 2), breakdown["IMG"]);
        Assert.Equal((1, 1), breakdown["NO"]);
        Assert.Equal((2, 2), breakdown["G1-6"]);
        Assert.Equal(50.0, breakdown.Accuracy("G7-12"));
    }

    [Fact]
    public void MissingImageFile_IsNamedWhenItsSplitIsRead()
    {
        string copy = Directory.CreateTempSubdirectory("graft-sqa-").FullName;
        try
        {
            foreach (var file in (string[])["problems.json", "pid_splits.json"])
                System.IO.File.Copy(Path.Combine(Folder("good"), file), Path.Combine(copy, file));
            var data = ScienceQaDataset.Load(copy);
            var e = Assert.Throws<DataFormatException>(() => data.Split("test"));
            Assert.Equal("qid 101", e.Location);
            Assert.Contains("image file missing", e.Problem);
            var missingSplit = Assert.Throws<DataFormatException>(() => data.Split("minitrain"));
            Assert.Contains("no split \"minitrain\"", missingSplit.Problem);
        }
        finally
        {
            Directory.Delete(copy, recursive: true);
        }
    }

    [Fact]
    public void AnswerOutOfRange_NamesTheQid()
    {
        var e = Assert.Throws<DataFormatException>(() => ScienceQaDataset.Load(Folder("bad_answer")));
        Assert.Equal("qid 1", e.Location);
        Assert.Contains("answer index 3 is out of range for 3 choices", e.Problem);
    }

    [Fact]
    public void MissingChoices_NamesTheField()
    {
        var e = Assert.Throws<DataFormatException>(() => ScienceQaDataset.Load(Folder("missing_field")));
        Assert.Equal("qid 1", e.Location);
        Assert.Contains("\"choices\" is missing", e.Problem);
    }
}

public class MmluReaderTests
{
    private static string Root => Path.Combine(GoldenCase.Folder("data"), "mmlu");

    [Fact]
    public void Csv_HandlesQuotedCommasDoubledQuotesNewlinesCrlfAndBlankLines()
    {
        using var expected = JsonDocument.Parse(System.IO.File.ReadAllText(Path.Combine(Root, "expected_prompts.json")));
        var questions = MmluReader.ReadCsv(Path.Combine(Root, "test", "high_school_physics_test.csv"));
        var rows = expected.RootElement.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(rows.Count, questions.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            var row = rows[i].EnumerateArray().Select(x => x.GetString()!).ToList();
            Assert.Equal("high_school_physics", questions[i].Subject);
            Assert.Equal(row[0], questions[i].Question);
            Assert.Equal(row.GetRange(1, 4), questions[i].Choices);
            Assert.Equal(row[5][0], questions[i].AnswerLetter);
        }
    }

    [Fact]
    public void Prompt_MatchesTheHendrycksFormatComputedInPython()
    {
        using var expected = JsonDocument.Parse(System.IO.File.ReadAllText(Path.Combine(Root, "expected_prompts.json")));
        var dev = MmluReader.ReadSplit(Root, "dev")["high_school_physics"];
        var test = MmluReader.ReadSplit(Root, "test");
        Assert.Equal(["abstract_algebra", "high_school_physics"], test.Keys);
        var prompts = expected.RootElement.GetProperty("prompts").EnumerateArray().Select(p => p.GetString()).ToList();
        Assert.Equal(prompts, test["high_school_physics"].Select(q => MmluPrompt.Build(q, dev, shots: 2)));
        Assert.StartsWith("The following are multiple choice questions (with answers) about  abstract algebra.\n\nFind all c",
            MmluPrompt.Build(test["abstract_algebra"][0], [], shots: 0));
    }

    [Fact]
    public void Jsonl_AcceptsLetterOrIndexAnswers()
    {
        var questions = MmluReader.ReadJsonl(Path.Combine(Root, "questions.jsonl"));
        Assert.Equal(['B', 'C'], questions.Select(q => q.AnswerLetter));
        Assert.Equal("anatomy", questions[1].Subject);
    }

    [Theory]
    [InlineData("wrong_columns_test.csv", "line 2", "5 columns; expected 6")]
    [InlineData("bad_letter_test.csv", "line 3", "answer \"E\" is not one of A, B, C, D")]
    [InlineData("unclosed_quote_test.csv", "line 2", "quoted field is never closed")]
    [InlineData("bad_answer.jsonl", "line 1", "answer \"F\" is not one of")]
    public void Malformed_NamesFileLineAndProblem(string file, string location, string problem)
    {
        string path = Path.Combine(GoldenCase.Folder("data"), "mmlu_bad", file);
        var e = Assert.Throws<DataFormatException>(() =>
            file.EndsWith(".jsonl") ? MmluReader.ReadJsonl(path) : MmluReader.ReadCsv(path));
        Assert.Equal(path, e.FileName);
        Assert.Equal(location, e.Location);
        Assert.Contains(problem, e.Problem);
    }
}

public class AlpacaReaderTests
{
    private static string File(string name) => Path.Combine(GoldenCase.Folder("data"), "alpaca", name);

    [Fact]
    public void Read_UsesTheTemplateWithAndWithoutInput()
    {
        var examples = AlpacaReader.Read(File("alpaca.json"));
        Assert.Equal(3, examples.Count);
        Assert.Equal(
            "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
            + "### Instruction:\nGive three tips for staying healthy.\n\n### Response:", examples[0].Prompt());
        Assert.Equal(
            "Below is an instruction that describes a task, paired with an input that provides further context. "
            + "Write a response that appropriately completes the request.\n\n"
            + "### Instruction:\nTranslate the sentence into French.\n\n### Input:\nThe cat is black.\n\n### Response:", examples[1].Prompt());
        Assert.Equal("", examples[2].Input);
    }

    [Fact]
    public void MissingOutput_NamesTheRecord()
    {
        var e = Assert.Throws<DataFormatException>(() => AlpacaReader.Read(File("missing_output.json")));
        Assert.Equal("record 1", e.Location);
        Assert.Contains("\"output\" is missing", e.Problem);
    }
}
