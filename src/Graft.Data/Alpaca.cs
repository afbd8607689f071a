using System.Text.Json;

namespace Graft.Data;

/// <summary>One instruction example; the loss is on <see cref="Output"/> only, as for an assistant turn.</summary>
public sealed record AlpacaExample(string Instruction, string Input, string Output)
{
    /// <summary>The Stanford Alpaca template (train.py PROMPT_DICT), with or without the input section.</summary>
    public string Prompt() => Input.Length > 0
        ? "Below is an instruction that describes a task, paired with an input that provides further context. "
          + "Write a response that appropriately completes the request.\n\n"
          + $"### Instruction:\n{Instruction}\n\n### Input:\n{Input}\n\n### Response:"
        : "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
          + $"### Instruction:\n{Instruction}\n\n### Response:";
}

/// <summary>Reads Alpaca-style JSON: <c>[{"instruction", "input"?, "output"}]</c>; a missing input is "".</summary>
public static class AlpacaReader
{
    public static List<AlpacaExample> Read(string path)
    {
        using var document = JsonFiles.ParseFile(path);
        if (document.RootElement.ValueKind != JsonValueKind.Array)
            throw new DataFormatException(path, "top level", $"expected a JSON array of examples, found {document.RootElement.ValueKind}");
        var examples = new List<AlpacaExample>();
        foreach (var element in document.RootElement.EnumerateArray())
        {
            var record = JsonRecord.Object(path, DataFormatException.Record(examples.Count, null), element);
            examples.Add(new AlpacaExample(record.String("instruction"), record.OptionalString("input") ?? "", record.String("output")));
        }
        return examples;
    }
}
