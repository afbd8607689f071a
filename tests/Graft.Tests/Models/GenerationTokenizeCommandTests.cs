using System.CommandLine;
using System.Text.Json;
using Graft.Cli;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

/// <summary>`graft tokenize` on the committed golden tokenizer folders, against their reference ids.</summary>
public sealed class GenerationTokenizeCommandTests
{
    private static (int Code, string Output, string Error) Run(params string[] args) =>
        CliRunner.Run([TokenizeCommand.Create()], args);

    [Theory]
    [InlineData("qwen2_style")]
    [InlineData("llama3_style")]
    [InlineData("llama2_style")]
    public void PrintsTheReferenceIdsAsAJsonArray(string style)
    {
        var folder = Path.Combine(AppContext.BaseDirectory, "Golden", "tokenizer", style);
        using var cases = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "cases.json")));
        var checkedCases = 0;
        foreach (var c in cases.RootElement.EnumerateArray()
                     .Where(c => c.GetProperty("add_special_tokens").GetBoolean() && c.GetProperty("parse_special_tokens").GetBoolean())
                     .Take(5))
        {
            var text = c.GetProperty("text").GetString()!;
            var (code, output, error) = Run("tokenize", "--model", folder, "--text", text);
            Assert.Equal(0, code);
            Assert.Equal("", error);
            Assert.EndsWith("\n", output);
            var expected = c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray();
            Assert.Equal("[" + string.Join(",", expected) + "]", output.TrimEnd());
            Assert.Equal(expected, JsonSerializer.Deserialize<int[]>(output));
            checkedCases++;
        }
        Assert.True(checkedCases > 0);
    }

    [Fact]
    public void AMissingFolderIsAnErrorNotACrash()
    {
        var (code, output, error) = Run("tokenize", "--model", "/nonexistent/model", "--text", "hi");
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Contains("/nonexistent/model", error);
        Assert.Contains("tokenizer.json", error);
    }
}
