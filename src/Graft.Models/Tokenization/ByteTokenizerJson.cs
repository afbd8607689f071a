using System.Text.Json.Nodes;

namespace Graft.Models.Tokenization;

/// <summary>
/// The tokenizer.json of the plainest byte-level BPE: no merges, so every UTF-8 byte is one token (ids 0-255, written
/// as GPT-2's byte characters), followed by the given special tokens. For checkpoints made up for benchmarks and tests,
/// where any text must tokenize and decode back.
/// </summary>
public static class ByteTokenizerJson
{
    public static string Create(IReadOnlyList<string> specialTokens)
    {
        ArgumentNullException.ThrowIfNull(specialTokens);
        var vocab = new JsonObject();
        for (int b = 0; b < 256; b++) vocab[ByteLevel.ByteToChar[b].ToString()] = b;
        var added = new JsonArray();
        for (int i = 0; i < specialTokens.Count; i++)
            added.Add(new JsonObject
            {
                ["id"] = 256 + i, ["content"] = specialTokens[i], ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            });
        JsonObject ByteLevelStep() => new() { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false };
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevelStep(),
            ["post_processor"] = ByteLevelStep(),
            ["decoder"] = ByteLevelStep(),
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = new JsonArray() },
        }.ToJsonString();
    }
}
