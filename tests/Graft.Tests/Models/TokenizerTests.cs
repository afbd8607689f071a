using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Graft.Models.Tokenization;
using Xunit.Abstractions;

namespace Graft.Tests.Models;

/// <summary>
/// Golden ids and decodes from tools/reference/tokenizer_golden.py (an independent Python implementation of
/// the HF tokenizers semantics) for three tokenizer styles, plus checks against published HF behaviour.
/// </summary>
public sealed class TokenizerTests
{
    private static readonly string[] Styles = ["qwen2_style", "llama3_style", "llama2_style"];
    private static readonly Dictionary<string, Tokenizer> Loaded = [];

    public static TheoryData<string> StyleNames => new(Styles);

    private static string Folder(string style) => Path.Combine(AppContext.BaseDirectory, "Golden", "tokenizer", style);

    private static Tokenizer Load(string style)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(style, out var t)) Loaded[style] = t = Tokenizer.FromFolder(Folder(style));
            return t;
        }
    }

    private sealed record Case(string Text, bool AddSpecial, bool ParseSpecial, int[] Ids, string Decoded, string DecodedSkip);

    private static List<Case> Cases(string style)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Folder(style), "cases.json")));
        return doc.RootElement.EnumerateArray().Select(c => new Case(
            c.GetProperty("text").GetString()!, c.GetProperty("add_special_tokens").GetBoolean(),
            c.GetProperty("parse_special_tokens").GetBoolean(),
            c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray(),
            c.GetProperty("decoded").GetString()!, c.GetProperty("decoded_skip_special").GetString()!)).ToList();
    }

    private static string Show(string text) => JsonSerializer.Serialize(text.Length > 60 ? text[..60] + "..." : text);

    [Theory, MemberData(nameof(StyleNames))]
    public void Encode_matches_the_reference_ids(string style)
    {
        var tokenizer = Load(style);
        foreach (var c in Cases(style))
        {
            var ids = tokenizer.Encode(c.Text, c.AddSpecial, c.ParseSpecial);
            Assert.True(c.Ids.SequenceEqual(ids),
                $"{style} {Show(c.Text)} add={c.AddSpecial} parse={c.ParseSpecial}: expected [{string.Join(",", c.Ids)}] got [{string.Join(",", ids)}]");
        }
    }

    [Theory, MemberData(nameof(StyleNames))]
    public void Decode_matches_the_reference_text(string style)
    {
        var tokenizer = Load(style);
        foreach (var c in Cases(style))
        {
            Assert.Equal(c.Decoded, tokenizer.Decode(c.Ids));
            Assert.Equal(c.DecodedSkip, tokenizer.Decode(c.Ids, skipSpecialTokens: true));
        }
    }

    [Theory, MemberData(nameof(StyleNames))]
    public void Decode_of_encode_gives_back_the_text_where_the_reference_does(string style)
    {
        var tokenizer = Load(style);
        int roundTrips = 0;
        foreach (var c in Cases(style).Where(c => c.Decoded == c.Text))
        {
            Assert.Equal(c.Text, tokenizer.Decode(tokenizer.Encode(c.Text, c.AddSpecial, c.ParseSpecial)));
            roundTrips++;
        }
        Assert.True(roundTrips >= 10, $"only {roundTrips} cases round-trip in the reference");
    }

    [Theory, MemberData(nameof(StyleNames))]
    public void Streaming_decode_concatenates_to_the_full_decode_and_never_splits_a_character(string style)
    {
        var tokenizer = Load(style);
        foreach (var c in Cases(style))
        {
            foreach (var skip in new[] { false, true })
            {
                var stream = tokenizer.CreateStreamingDecoder(skip);
                var text = new StringBuilder();
                foreach (var id in c.Ids)
                {
                    var piece = stream.Step(id);
                    Assert.DoesNotContain('\uFFFD', piece);
                    Assert.False(piece.Length > 0 && char.IsHighSurrogate(piece[^1]), $"{Show(c.Text)}: a piece ends in half a surrogate pair");
                    text.Append(piece);
                }
                text.Append(stream.Flush());
                Assert.Equal(skip ? c.DecodedSkip : c.Decoded, text.ToString());
            }
        }
    }

    [Fact]
    public void Streaming_holds_back_byte_fallback_tokens_until_the_character_is_complete()
    {
        var tokenizer = Load("llama2_style");
        var ids = tokenizer.Encode("a😀", addSpecialTokens: false);
        var byteTokens = ids.Select(id => tokenizer.IdToToken(id)!).Where(t => t.StartsWith("<0x", StringComparison.Ordinal)).ToArray();
        Assert.Equal(["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"], byteTokens);
        var stream = tokenizer.CreateStreamingDecoder();
        var pieces = ids.Select(stream.Step).ToArray();
        Assert.Equal(["a", "", "", "", "😀"], pieces);
    }

    [Fact]
    public void Config_gives_bos_eos_and_chat_template()
    {
        var qwen = Load("qwen2_style");
        Assert.Null(qwen.BosTokenId);
        Assert.Equal(qwen.TokenToId("<|im_end|>"), qwen.EosTokenId);
        Assert.False(qwen.AddBosToken);
        Assert.StartsWith("{% for message in messages %}", qwen.ChatTemplate);
        Assert.Equal(new[] { "<|endoftext|>", "<|im_start|>", "<|im_end|>" }, qwen.SpecialTokens.Keys.Order(StringComparer.Ordinal).ToArray().OrderBy(k => qwen.SpecialTokens[k]));

        var llama2 = Load("llama2_style");
        Assert.Equal(1, llama2.BosTokenId);
        Assert.Equal(2, llama2.EosTokenId);
        Assert.True(llama2.AddBosToken);
        Assert.Equal("<0x0A>", llama2.IdToToken(3 + 0x0A));

        var llama3 = Load("llama3_style");
        Assert.Equal(llama3.VocabSize - 3, llama3.BosTokenId);
        Assert.Equal(llama3.BosTokenId, llama3.Encode("hi")[0]);
        Assert.Null(llama3.IdToToken(llama3.VocabSize));
    }

    [Fact]
    public void Llama3_style_ignore_merges_emits_a_vocabulary_word_whole()
    {
        var tokenizer = Load("llama3_style");
        // " tokenizer" is in the vocabulary but no merge path builds it: only ignore_merges gives one token.
        Assert.Equal(new[] { tokenizer.TokenToId("Ġtokenizer")!.Value }, tokenizer.Encode(" tokenizer", addSpecialTokens: false));
        Assert.True(Load("qwen2_style").Encode(" tokenizer", addSpecialTokens: false).Length > 1);
    }

    // Published behaviour of the reference, independent of tools/reference: the ByteLevel pre-tokenizer
    // example of the HF tokenizers docs, and the byte map's well-known characters (Ġ space, Ċ newline).
    [Fact]
    public void ByteLevel_pre_tokenizer_matches_the_published_example()
    {
        var preTokenizer = new ByteLevelPreTokenizer(addPrefixSpace: false, useRegex: true, "test", "pre_tokenizer");
        var words = new List<Piece>();
        preTokenizer.Split(new Piece("Hello my friend, how are you?", true), words);
        Assert.Equal(["Hello", "Ġmy", "Ġfriend", ",", "Ġhow", "Ġare", "Ġyou", "?"], words.Select(w => w.Text));
        Assert.Equal("ĠĊĉ", ByteLevel.Encode(" \n\t"));
        Assert.Equal("ä¸Ń", ByteLevel.Encode("中"));
    }

    [Fact]
    public void Qwen2_splits_digits_one_by_one_and_llama3_by_threes()
    {
        static string[] Split(string pattern, string text)
        {
            var split = new SplitPreTokenizer(new UnicodeRegex(pattern, "test", "pattern"), SplitBehavior.Isolated, false);
            var words = new List<Piece>();
            split.Split(new Piece(text, true), words);
            return words.Select(w => w.Text).ToArray();
        }
        var qwen = PatternOf("qwen2_style");
        var llama3 = PatternOf("llama3_style");
        Assert.Equal(["1", "2", "3", "4", "5"], Split(qwen, "12345"));
        Assert.Equal(["123", "45"], Split(llama3, "12345"));
        Assert.Equal(["I", "'LL", " go"], Split(llama3, "I'LL go"));
        Assert.Equal(["a", "\n\n", " ", " b"], Split(qwen, "a\n\n  b"));
        // An astral symbol followed by letters is one pre-token, as with code-point matching in the reference.
        Assert.Equal(["😀abc"], Split(qwen, "😀abc"));
        Assert.Equal(["𝐇𝐞𝐥𝐥𝐨", " ", "𝟏", "𝟐"], Split(qwen, "𝐇𝐞𝐥𝐥𝐨 𝟏𝟐"));
    }

    private static string PatternOf(string style)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Folder(style), "tokenizer.json")));
        return doc.RootElement.GetProperty("pre_tokenizer").GetProperty("pretokenizers")[0].GetProperty("pattern").GetProperty("Regex").GetString()!;
    }

    [Theory, MemberData(nameof(StyleNames))]
    public void A_lone_surrogate_is_encoded_without_a_crash(string style)
    {
        var tokenizer = Load(style);
        Assert.NotEmpty(tokenizer.Encode("a\uD800b e\u0301\uDC00", addSpecialTokens: false));
    }

    [Fact]
    public void Decode_rejects_an_id_outside_the_vocabulary()
    {
        var tokenizer = Load("qwen2_style");
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([0, tokenizer.VocabSize]));
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([-1]));
    }

    private const string MinimalModel = """{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}""";

    private static Exception LoadError(string json, string name = "tokenizer.json")
    {
        var dir = Directory.CreateTempSubdirectory("graft-tokenizer-");
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, name), json);
            return Record.Exception(() => Tokenizer.FromFolder(dir.FullName))!;
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void A_minimal_file_loads_and_merges()
    {
        var dir = Directory.CreateTempSubdirectory("graft-tokenizer-");
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, "tokenizer.json"), "{\"model\":" + MinimalModel + "}");
            var tokenizer = Tokenizer.FromFolder(dir.FullName);
            Assert.Equal([2, 0], tokenizer.Encode("aba"));
            Assert.Equal("ab a", tokenizer.Decode([2, 0]));
            Assert.Null(tokenizer.BosTokenId);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Errors_name_the_file_and_the_field()
    {
        var invalid = Assert.IsType<TokenizerFormatException>(LoadError("""{"model": {"type": "BPE", "vocab": {"""));
        Assert.EndsWith("tokenizer.json", invalid.File);
        Assert.Contains("not valid JSON", invalid.Message);

        var wordPiece = Assert.IsType<UnsupportedTokenizerException>(LoadError("""{"model":{"type":"WordPiece","vocab":{}}}"""));
        Assert.Equal("model.type", wordPiece.Field);
        Assert.Contains("WordPiece", wordPiece.Message);
        Assert.Contains("tokenizer.json", wordPiece.Message);

        var preTokenizer = Assert.IsType<UnsupportedTokenizerException>(LoadError(
            "{\"model\":" + MinimalModel + ",\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"ByteLevel\"},{\"type\":\"Whitespace\"}]}}"));
        Assert.Equal("pre_tokenizer.pretokenizers[1].type", preTokenizer.Field);

        var missing = Assert.IsType<TokenizerFormatException>(LoadError("""{"normalizer":null}"""));
        Assert.Equal("model", missing.Field);
        Assert.Contains("is missing", missing.Message);

        var badMerge = Assert.IsType<TokenizerFormatException>(LoadError("""{"model":{"type":"BPE","vocab":{"a":0},"merges":["a c"]}}"""));
        Assert.Equal("model.merges[0]", badMerge.Field);

        var badVocab = Assert.IsType<TokenizerFormatException>(LoadError("""{"model":{"type":"BPE","vocab":{"a":"zero"},"merges":[]}}"""));
        Assert.Equal("model.vocab.a", badVocab.Field);

        var noFile = LoadError("{}", "other.json");
        Assert.IsType<FileNotFoundException>(noFile);
    }

    [Fact, Trait("Category", "Slow")]
    public void A_megabyte_of_text_round_trips()
    {
        // Texts the reference itself decodes back unchanged (not the NFD ones that NFC composes).
        var cases = Cases("qwen2_style").Where(c => c.Text.Length > 0 && c.Decoded == c.Text && !c.AddSpecial && !c.ParseSpecial)
            .Select(c => c.Text).ToArray();
        var text = new StringBuilder();
        while (text.Length < 1 << 20) text.AppendJoin("\n", cases).Append('\n');
        var megabyte = text.ToString();
        foreach (var style in Styles)
        {
            var tokenizer = Load(style);
            var ids = tokenizer.Encode(megabyte, addSpecialTokens: false, parseSpecialTokens: false);
            Assert.Equal(megabyte, tokenizer.Decode(ids));
        }
    }

    [Fact]
    public void Pre_tokenized_words_are_what_the_model_merges_and_added_tokens_are_left_out()
    {
        var tokenizer = Load("qwen2_style");
        Assert.Equal(["Hello", ",", "Ġworld", "Ġ", "1", "2", "3", "Ċ"], tokenizer.PreTokenize("Hello, world 123\n"));
        Assert.Equal(["hi", "Ġthere"], tokenizer.PreTokenize("hi<|im_end|> there"));
    }

    [Fact]
    public void From_json_text_equals_from_folder()
    {
        string folder = Folder("qwen2_style");
        var fromJson = Tokenizer.FromJson(File.ReadAllText(Path.Combine(folder, "tokenizer.json")), File.ReadAllText(Path.Combine(folder, "tokenizer_config.json")));
        var fromFolder = Load("qwen2_style");
        Assert.Equal(fromFolder.Encode("Graft <|im_start|>user é 42"), fromJson.Encode("Graft <|im_start|>user é 42"));
        Assert.Equal(fromFolder.ChatTemplate, fromJson.ChatTemplate);
        Assert.Equal(fromFolder.EosToken, fromJson.EosToken);
        var error = Assert.Throws<TokenizerFormatException>(() => Tokenizer.FromJson("{", source: "inline.json"));
        Assert.Contains("inline.json", error.Message);
    }
}
