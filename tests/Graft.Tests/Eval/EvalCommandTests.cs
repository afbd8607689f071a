using System.CommandLine;
using System.Text.Json;
using Graft.Cli;
using Graft.Training.Data;

namespace Graft.Tests.Eval;

/// <summary>`graft eval` and `graft report` run in-process on a generated text world with the tiny checkpoint.</summary>
public class EvalCommandTests
{
    private static (int ExitCode, string Output, string Error) Invoke(params string[] args)
    {
        var root = new RootCommand();
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(ReportCommand.Create());
        var output = new StringWriter();
        var error = new StringWriter();
        int code = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (code, output.ToString(), error.ToString());
    }

    private static string TextWorld(TempFolder temp)
    {
        string folder = Path.Combine(temp.Path, "world");
        Graft.Training.Data.TextWorld.Write(new DataOutput(folder, force: false, Graft.Training.Data.TextWorld.OutputNames), 8, seed: 5);
        return Path.Combine(folder, "mmlu");
    }

    [Fact]
    public void Eval_prints_parseable_json_with_counts_that_add_up()
    {
        using var temp = new TempFolder();
        string model = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        string mmlu = TextWorld(temp);

        var (code, output, error) = Invoke("eval", "--model", model, "--bench", "mmlu:" + mmlu, "--limit", "6", "--shots", "1", "--json");
        Assert.True(code == 0, error);
        Assert.Contains("mmlu [", error);
        Assert.Contains("6/6", error);

        using var json = JsonDocument.Parse(output);
        Assert.Equal("base", json.RootElement.GetProperty("route").GetString());
        var bench = Assert.Single(json.RootElement.GetProperty("benchmarks").EnumerateArray());
        var overall = bench.GetProperty("overall");
        Assert.Equal(6, overall.GetProperty("total").GetInt32());
        var categories = bench.GetProperty("categories").EnumerateArray().ToList();
        Assert.Equal(TextWorld_Subjects, categories.Select(c => c.GetProperty("name").GetString()));
        Assert.All(categories, c => Assert.Equal(2, c.GetProperty("total").GetInt32()));
        Assert.Equal(overall.GetProperty("correct").GetInt32(), categories.Sum(c => c.GetProperty("correct").GetInt32()));
    }

    private static readonly string[] TextWorld_Subjects = [.. Graft.Training.Data.TextWorld.Subjects];

    [Fact]
    public void Report_writes_markdown_json_and_a_chart_for_the_base()
    {
        using var temp = new TempFolder();
        string model = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        string mmlu = TextWorld(temp);
        string output = Path.Combine(temp.Path, "report");

        var (code, printed, error) = Invoke("report", "--model", model, "--bench", "mmlu:" + mmlu, "--limit", "3", "--shots", "0", "--quiet", "--out", output);
        Assert.True(code == 0, error);
        Assert.Equal("", error);
        Assert.Contains("report.md", printed);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "report.json")));
        var entry = Assert.Single(json.RootElement.GetProperty("entries").EnumerateArray());
        Assert.Equal(3, entry.GetProperty("columns").GetProperty("mmlu text (base route)").GetProperty("total").GetInt32());
        Assert.True(entry.GetProperty("size_on_disk_bytes").GetInt64() > 0);
        Assert.True(File.Exists(Path.Combine(output, "text.svg")));
    }

    [Theory]
    [InlineData("nope:/x", "unknown kind")]
    [InlineData("mmlu:/does/not/exist", "/does/not/exist")]
    public void Bad_benchmarks_are_one_line_and_exit_code_1(string bench, string named)
    {
        using var temp = new TempFolder();
        string model = EvalFixtures.ModelFolder(temp, mergeLetters: true);
        var (code, _, error) = Invoke("eval", "--model", model, "--bench", bench, "--quiet");
        Assert.Equal(1, code);
        Assert.Contains(named, error);
    }
}
