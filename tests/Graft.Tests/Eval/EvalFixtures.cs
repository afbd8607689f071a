using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Graft.Eval;
using Graft.Tests.Support;

namespace Graft.Tests.Eval;

/// <summary>A temporary folder deleted on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("graft-eval-").FullName;

    public string File(string relative, string content)
    {
        string path = System.IO.Path.Combine(Path, relative);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        System.IO.File.WriteAllText(path, content);
        return path;
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

/// <summary>
/// A scoring model whose answers are fixed by construction: <c>pick(prompt, choices)</c> chooses the letter and
/// <c>generate(prompt)</c> the text. It records every prompt it is given.
/// </summary>
internal sealed class FakeScoringModel(Func<EvalPrompt, int, int> pick, Func<EvalPrompt, string> generate, bool acceptsImages = false) : IScoringModel
{
    public List<EvalPrompt> Prompts { get; } = [];
    public string Route => acceptsImages ? "plugin:fake" : "base";
    public bool AcceptsImages => acceptsImages;
    public int TruncatedPrompts => 0;

    public double[] LogLikelihoods(EvalPrompt prompt, IReadOnlyList<string> continuations)
    {
        Assert.True(acceptsImages || !prompt.HasImages, "the harness sent an image to a route without images");
        Prompts.Add(prompt);
        int chosen = pick(prompt, continuations.Count);
        return continuations.Select((_, i) => i == chosen ? -0.5 : -3.0).ToArray();
    }

    public string Generate(EvalPrompt prompt, int maxNewTokens, string? stop = null)
    {
        Assert.True(acceptsImages || !prompt.HasImages, "the harness sent an image to a route without images");
        Prompts.Add(prompt);
        return generate(prompt);
    }

    /// <summary>The number n of the last "Qn" in the prompt (the question being asked).</summary>
    public static int LastQuestion(EvalPrompt prompt) => int.Parse(Regex.Matches(prompt.Text, @"Q(\d+)")[^1].Groups[1].Value);
}

internal static class EvalFixtures
{
    /// <summary>
    /// A byte-level BPE tokenizer small enough for the tiny checkpoints (vocabulary under 320): the 256 byte
    /// symbols as ids 0..255 and an end-of-text token at 300; with <paramref name="mergeLetters"/> also merges
    /// "Ġ"+"A".."E" (ids 256..260), so " A" is one token, else " A" is two; with <paramref name="bos"/> a post-processor
    /// begins every encoding with the end-of-text token as BOS (as GPT-2's does).
    /// </summary>
    public static string TokenizerJson(bool mergeLetters, bool bos = false)
    {
        var symbols = ByteSymbols();
        var vocab = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++) vocab[symbols[b].ToString()] = b;
        var merges = new List<string>();
        if (mergeLetters)
            for (int i = 0; i < 5; i++)
            {
                string letter = ((char)('A' + i)).ToString();
                vocab["Ġ" + letter] = 256 + i;
                merges.Add("Ġ " + letter);
            }
        var byteLevel = new Dictionary<string, object> { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = true };
        var document = new Dictionary<string, object>
        {
            ["version"] = "1.0",
            ["added_tokens"] = new[] { new Dictionary<string, object> { ["id"] = 300, ["content"] = "<|endoftext|>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true } },
            ["pre_tokenizer"] = byteLevel,
            ["decoder"] = byteLevel,
            ["model"] = new Dictionary<string, object>
            {
                ["type"] = "BPE", ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "", ["fuse_unk"] = false,
                ["byte_fallback"] = false, ["ignore_merges"] = false, ["vocab"] = vocab, ["merges"] = merges,
            },
        };
        if (bos)
        {
            object Special(int typeId) => new Dictionary<string, object> { ["SpecialToken"] = new Dictionary<string, object> { ["id"] = "<|endoftext|>", ["type_id"] = typeId } };
            object Sequence(string id, int typeId) => new Dictionary<string, object> { ["Sequence"] = new Dictionary<string, object> { ["id"] = id, ["type_id"] = typeId } };
            document["post_processor"] = new Dictionary<string, object>
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new[] { Special(0), Sequence("A", 0) },
                ["pair"] = new[] { Special(0), Sequence("A", 0), Special(1), Sequence("B", 1) },
                ["special_tokens"] = new Dictionary<string, object>
                {
                    ["<|endoftext|>"] = new Dictionary<string, object> { ["id"] = "<|endoftext|>", ["ids"] = new[] { 300 }, ["tokens"] = new[] { "<|endoftext|>" } },
                },
            };
        }
        return JsonSerializer.Serialize(document);
    }

    /// <summary>GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256 + n.</summary>
    private static char[] ByteSymbols()
    {
        var symbols = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            symbols[b] = printable ? (char)b : (char)(256 + next++);
        }
        return symbols;
    }

    /// <summary>
    /// The tiny Llama checkpoint copied with the test tokenizer beside it (a complete model folder): a base with no chat
    /// training, so its tokenizer_config.json carries the plain chat template and &lt;|endoftext|&gt; as its end of sequence.
    /// </summary>
    public static string ModelFolder(TempFolder temp, bool mergeLetters, bool bos = false)
    {
        string folder = System.IO.Path.Combine(temp.Path, "model");
        Directory.CreateDirectory(folder);
        foreach (var file in Directory.GetFiles(System.IO.Path.Combine(GoldenCase.Folder("llm"), "models", "llama")))
            File.Copy(file, System.IO.Path.Combine(folder, System.IO.Path.GetFileName(file)));
        File.WriteAllText(System.IO.Path.Combine(folder, "tokenizer.json"), TokenizerJson(mergeLetters, bos));
        File.WriteAllText(System.IO.Path.Combine(folder, "tokenizer_config.json"), PlainTokenizerConfig);
        return folder;
    }

    /// <summary>tokenizer_config.json of a base with no chat training: the plain template, and &lt;|endoftext|&gt; ending a turn.</summary>
    public static readonly string PlainTokenizerConfig = JsonSerializer.Serialize(new Dictionary<string, string>
    {
        ["eos_token"] = "<|endoftext|>", ["chat_template"] = Graft.Models.Chat.PlainChatTemplate.Jinja,
    });

    /// <summary>An MMLU folder: per subject a dev CSV of two shots and a test CSV whose question i reads "Qn" with the given answers.</summary>
    public static string Mmlu(TempFolder temp, params (string Subject, string Answers)[] subjects)
    {
        int n = 0;
        foreach (var (subject, answers) in subjects)
        {
            temp.File($"mmlu/dev/{subject}_dev.csv", "Shot one?,a,b,c,d,A\nShot two?,a,b,c,d,B\n");
            var test = new StringBuilder();
            foreach (char answer in answers) test.Append($"Q{n++} in {subject}?,w,x,y,z,{answer}\n");
            temp.File($"mmlu/test/{subject}_test.csv", test.ToString());
        }
        return System.IO.Path.Combine(temp.Path, "mmlu");
    }

    /// <summary>
    /// A ScienceQA folder, every problem in "test": problem n asks "Qn?" with three choices; answers n % 3;
    /// natural science for even n, social for odd; grade n+1 (so G1-6 and G7-12); a hint when n % 4 == 1;
    /// an image when n % 4 == 2 or 3.
    /// </summary>
    public static string ScienceQa(TempFolder temp, int count)
    {
        var problems = new Dictionary<string, object>();
        for (int n = 0; n < count; n++)
        {
            bool image = n % 4 is 2 or 3;
            problems[n.ToString()] = new Dictionary<string, object?>
            {
                ["question"] = $"Q{n}?", ["choices"] = new[] { "red", "green", "blue" }, ["answer"] = n % 3,
                ["hint"] = n % 4 == 1 ? "A hint." : "", ["image"] = image ? "image.png" : null,
                ["subject"] = n % 2 == 0 ? "natural science" : "social science", ["grade"] = $"grade{n % 12 + 1}",
                ["lecture"] = "", ["solution"] = "", ["split"] = "test",
            };
            if (image) temp.File($"scienceqa/images/test/{n}/image.png", "not read by the harness");
        }
        temp.File("scienceqa/problems.json", JsonSerializer.Serialize(problems));
        temp.File("scienceqa/pid_splits.json", JsonSerializer.Serialize(new Dictionary<string, string[]> { ["test"] = problems.Keys.ToArray() }));
        return System.IO.Path.Combine(temp.Path, "scienceqa");
    }
}
