using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Graft.Models.Tokenization;

namespace Graft.Training.Tokenization;

/// <summary>What <see cref="ByteLevelBpeTrainer.Train"/> builds.</summary>
public sealed record BpeTrainingOptions
{
    public static readonly IReadOnlyList<string> ChatMLSpecialTokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

    /// <summary>Every id: the 256 byte symbols, one per merge, and the special tokens.</summary>
    public int VocabSize { get; init; } = 1024;

    /// <summary>Added after the learned vocabulary, in this order (Qwen2's ChatML tokens by default).</summary>
    public IReadOnlyList<string> SpecialTokens { get; init; } = ChatMLSpecialTokens;

    /// <summary>A pair seen fewer times than this is never merged (training may then stop short of <see cref="VocabSize"/>).</summary>
    public int MinFrequency { get; init; } = 2;

    /// <summary>tokenizer_config.json's eos_token (the chat turn's end) and pad_token.</summary>
    public string EosToken { get; init; } = "<|im_end|>";
    public string PadToken { get; init; } = "<|endoftext|>";

    /// <summary>tokenizer_config.json's model_max_length (the model's context).</summary>
    public int ModelMaxLength { get; init; } = 512;

    /// <summary>tokenizer_config.json's chat_template (Jinja); ChatML by default.</summary>
    public string ChatTemplate { get; init; } = ByteLevelBpeTrainer.ChatTemplate;
}

/// <summary>A trained tokenizer: the two files of a Hugging Face folder, and the merges in rank order.</summary>
public sealed class TrainedTokenizer(string tokenizerJson, string tokenizerConfigJson, IReadOnlyList<(string Left, string Right)> merges)
{
    public string TokenizerJson { get; } = tokenizerJson;
    public string TokenizerConfigJson { get; } = tokenizerConfigJson;
    public IReadOnlyList<(string Left, string Right)> Merges { get; } = merges;

    /// <summary>File name to content, as <c>DecoderCheckpointOptions.TokenizerFiles</c> takes them.</summary>
    public IReadOnlyDictionary<string, string> Files => new Dictionary<string, string>
    {
        ["tokenizer.json"] = TokenizerJson,
        ["tokenizer_config.json"] = TokenizerConfigJson,
    };

    public Tokenizer Load() => Tokenizer.FromJson(TokenizerJson, TokenizerConfigJson, "trained tokenizer.json");
}

/// <summary>
/// Trains a byte-level BPE tokenizer as Hugging Face's BpeTrainer does, laid out as Qwen2's: NFC, Qwen2's split
/// pattern (single digits, words with one leading non-letter, punctuation runs, newlines), byte-level symbols; the
/// vocabulary starts from all 256 byte symbols (GPT-2's order), then repeatedly merges the most frequent adjacent
/// pair, counted over the distinct words weighted by how often they occur (ties: the pair of smallest ids). The
/// special tokens are added last, and tokenizer_config.json carries a ChatML chat template. Deterministic: the same
/// texts and options give the same files, byte for byte.
/// </summary>
public static class ByteLevelBpeTrainer
{
    /// <summary>
    /// Qwen2's pre-tokenizer pattern (every digit its own word, which keeps arithmetic digit by digit) with one
    /// alternative in front: a space before a lone capital letter is a word of its own, so an answer " B" is the same
    /// token "B" as the option line "B. ..." it names, and a small model binds answers to options by copying a token.
    /// </summary>
    public const string SplitPattern = @"\s(?=\p{Lu}(?![\p{L}\p{N}]))|(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>The ChatML template as Jinja (no default system turn), which ChatTemplates detects as "chatml".</summary>
    public const string ChatTemplate =
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private static readonly JsonWriterOptions JsonOptions = new() { Indented = true, NewLine = "\n", Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static TrainedTokenizer Train(IEnumerable<string> texts, BpeTrainingOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(texts);
        options ??= new BpeTrainingOptions();
        int alphabet = ByteLevel.Alphabet.Count;
        if (options.VocabSize < alphabet + options.SpecialTokens.Count)
            throw new ArgumentOutOfRangeException(nameof(options), $"a vocabulary of {options.VocabSize} cannot hold the {alphabet} byte symbols and {options.SpecialTokens.Count} special tokens");
        if (options.MinFrequency < 1) throw new ArgumentOutOfRangeException(nameof(options), $"minimum frequency must be at least 1, got {options.MinFrequency}");
        if (options.SpecialTokens.Distinct().Count() != options.SpecialTokens.Count) throw new ArgumentException("special tokens repeat", nameof(options));
        foreach (var required in new[] { options.EosToken, options.PadToken })
            if (!options.SpecialTokens.Contains(required)) throw new ArgumentException($"'{required}' is not one of the special tokens", nameof(options));

        var symbols = ByteLevel.Alphabet.OrderBy(c => c).Select(c => c.ToString()).ToList();
        var ids = symbols.Select((s, i) => (s, i)).ToDictionary(p => p.s, p => p.i, StringComparer.Ordinal);
        var splitter = Tokenizer.FromJson(TokenizerJson(symbols, [], options.SpecialTokens), source: "byte alphabet");
        var words = CountWords(texts, splitter, ids);

        var merges = new List<(string, string)>();
        int learnable = options.VocabSize - options.SpecialTokens.Count;
        while (symbols.Count < learnable)
        {
            var best = MostFrequentPair(words);
            if (best.Count < options.MinFrequency) break;
            string merged = symbols[best.Left] + symbols[best.Right];
            if (!ids.TryGetValue(merged, out int id))
            {
                id = symbols.Count;
                symbols.Add(merged);
                ids[merged] = id;
            }
            merges.Add((symbols[best.Left], symbols[best.Right]));
            foreach (var word in words) word.Merge(best.Left, best.Right, id);
        }
        return new TrainedTokenizer(TokenizerJson(symbols, merges, options.SpecialTokens), TokenizerConfigJson(symbols.Count, options), merges);
    }

    private sealed class Word(int[] symbols, long count)
    {
        public List<int> Symbols { get; } = [.. symbols];
        public long Count { get; } = count;

        /// <summary>Replaces every non-overlapping (left, right), left to right, by <paramref name="merged"/>.</summary>
        public void Merge(int left, int right, int merged)
        {
            for (int i = 0; i + 1 < Symbols.Count; i++)
                if (Symbols[i] == left && Symbols[i + 1] == right)
                {
                    Symbols[i] = merged;
                    Symbols.RemoveAt(i + 1);
                }
        }
    }

    /// <summary>The distinct pre-tokenized words with their counts, each as byte-symbol ids, in ordinal order of the word.</summary>
    private static List<Word> CountWords(IEnumerable<string> texts, Tokenizer splitter, Dictionary<string, int> ids)
    {
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var text in texts)
            foreach (var word in splitter.PreTokenize(text))
                counts[word] = counts.GetValueOrDefault(word) + 1;
        return counts.OrderBy(c => c.Key, StringComparer.Ordinal)
            .Select(c => new Word(c.Key.Select(ch => ids[ch.ToString()]).ToArray(), c.Value))
            .ToList();
    }

    private static (int Left, int Right, long Count) MostFrequentPair(List<Word> words)
    {
        var counts = new Dictionary<(int, int), long>();
        foreach (var word in words)
            for (int i = 0; i + 1 < word.Symbols.Count; i++)
            {
                var pair = (word.Symbols[i], word.Symbols[i + 1]);
                counts[pair] = counts.GetValueOrDefault(pair) + word.Count;
            }
        (int Left, int Right, long Count) best = (-1, -1, 0);
        foreach (var ((left, right), count) in counts)
            if (count > best.Count || (count == best.Count && (left, right).CompareTo((best.Left, best.Right)) < 0))
                best = (left, right, count);
        return best;
    }

    private static string TokenizerJson(IReadOnlyList<string> vocabulary, IReadOnlyList<(string Left, string Right)> merges, IReadOnlyList<string> special)
    {
        var byteLevel = new Action<Utf8JsonWriter>(w =>
        {
            w.WriteString("type", "ByteLevel");
            w.WriteBoolean("add_prefix_space", false);
            w.WriteBoolean("trim_offsets", false);
            w.WriteBoolean("use_regex", false);
        });
        return Json(w =>
        {
            w.WriteStartObject();
            w.WriteString("version", "1.0");
            w.WriteNull("truncation");
            w.WriteNull("padding");
            w.WriteStartArray("added_tokens");
            for (int i = 0; i < special.Count; i++)
            {
                w.WriteStartObject();
                w.WriteNumber("id", vocabulary.Count + i);
                w.WriteString("content", special[i]);
                w.WriteBoolean("single_word", false);
                w.WriteBoolean("lstrip", false);
                w.WriteBoolean("rstrip", false);
                w.WriteBoolean("normalized", false);
                w.WriteBoolean("special", true);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("normalizer");
            w.WriteString("type", "NFC");
            w.WriteEndObject();
            w.WriteStartObject("pre_tokenizer");
            w.WriteString("type", "Sequence");
            w.WriteStartArray("pretokenizers");
            w.WriteStartObject();
            w.WriteString("type", "Split");
            w.WriteStartObject("pattern");
            w.WriteString("Regex", SplitPattern);
            w.WriteEndObject();
            w.WriteString("behavior", "Isolated");
            w.WriteBoolean("invert", false);
            w.WriteEndObject();
            w.WriteStartObject();
            byteLevel(w);
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteStartObject("post_processor");
            byteLevel(w);
            w.WriteEndObject();
            w.WriteStartObject("decoder");
            byteLevel(w);
            w.WriteEndObject();
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteNull("dropout");
            w.WriteNull("unk_token");
            w.WriteString("continuing_subword_prefix", "");
            w.WriteString("end_of_word_suffix", "");
            w.WriteBoolean("fuse_unk", false);
            w.WriteBoolean("byte_fallback", false);
            w.WriteBoolean("ignore_merges", false);
            w.WriteStartObject("vocab");
            for (int i = 0; i < vocabulary.Count; i++) w.WriteNumber(vocabulary[i], i);
            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach (var (left, right) in merges) w.WriteStringValue(left + " " + right);
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        });
    }

    private static string TokenizerConfigJson(int learned, BpeTrainingOptions options) => Json(w =>
    {
        w.WriteStartObject();
        w.WriteBoolean("add_bos_token", false);
        w.WriteBoolean("add_prefix_space", false);
        w.WriteStartObject("added_tokens_decoder");
        for (int i = 0; i < options.SpecialTokens.Count; i++)
        {
            w.WriteStartObject((learned + i).ToString(System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("content", options.SpecialTokens[i]);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteNull("bos_token");
        w.WriteString("chat_template", options.ChatTemplate);
        w.WriteBoolean("clean_up_tokenization_spaces", false);
        w.WriteString("eos_token", options.EosToken);
        w.WriteString("errors", "replace");
        w.WriteNumber("model_max_length", options.ModelMaxLength);
        w.WriteString("pad_token", options.PadToken);
        w.WriteBoolean("split_special_tokens", false);
        w.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
        w.WriteNull("unk_token");
        w.WriteEndObject();
    });

    private static string Json(Action<Utf8JsonWriter> write)
    {
        var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, JsonOptions)) write(writer);
        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }
}
