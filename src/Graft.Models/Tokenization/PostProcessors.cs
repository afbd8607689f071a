namespace Graft.Models.Tokenization;

/// <summary>tokenizer.json `post_processor`: what addSpecialTokens adds around a single sequence.</summary>
internal abstract class PostProcessor
{
    public abstract List<int> Process(List<int> ids);

    public static PostProcessor? Parse(JsonNode? node)
    {
        if (node is not { } n) return null;
        return n.Type switch
        {
            "Sequence" => new SequenceProcessor(n.Required("processors").Items().Select(i => Parse(i)!).ToArray()),
            "ByteLevel" => new TemplateProcessor([], []),
            "TemplateProcessing" => TemplateProcessor.FromTemplate(n),
            "RobertaProcessing" or "BertProcessing" => new TemplateProcessor([IdOfPair(n.Required("cls"))], [IdOfPair(n.Required("sep"))]),
            var other => throw new UnsupportedTokenizerException(n.File, n.Child("type"), $"post-processor '{other}' is not supported"),
        };
    }

    /// <summary>["&lt;s&gt;", 0]: the token and its id.</summary>
    private static int IdOfPair(JsonNode pair)
    {
        var items = pair.Items().ToArray();
        if (items.Length != 2) throw pair.Malformed("expected [token, id]");
        return items[1].AsInt();
    }
}

internal sealed class SequenceProcessor(PostProcessor[] inner) : PostProcessor
{
    public override List<int> Process(List<int> ids)
    {
        foreach (var p in inner) ids = p.Process(ids);
        return ids;
    }
}

/// <summary>Fixed ids before and after the sequence (ByteLevel adds none; Roberta adds cls/sep; a template says which).</summary>
internal sealed class TemplateProcessor(int[] before, int[] after) : PostProcessor
{
    public static TemplateProcessor FromTemplate(JsonNode n)
    {
        var specials = n.Required("special_tokens");
        var before = new List<int>();
        var after = new List<int>();
        bool seenSequence = false;
        foreach (var item in n.Required("single").Items())
        {
            if (item.Optional("Sequence") is { } seq)
            {
                if (seenSequence) throw seq.Malformed("the single template has more than one sequence");
                if (seq.String("id") != "A") throw seq.Required("id").Malformed("the single template must use sequence A");
                seenSequence = true;
            }
            else if (item.Optional("SpecialToken") is { } special)
            {
                var name = special.String("id");
                var entry = specials.Optional(name) ?? throw specials.Malformed($"'{name}' is used in the template but not defined");
                (seenSequence ? after : before).AddRange(entry.Required("ids").Items().Select(i => i.AsInt()));
            }
            else throw item.Malformed("expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
        }
        if (!seenSequence) throw n.Required("single").Malformed("the single template has no sequence");
        return new TemplateProcessor([.. before], [.. after]);
    }

    public override List<int> Process(List<int> ids)
    {
        if (before.Length == 0 && after.Length == 0) return ids;
        var output = new List<int>(ids.Count + before.Length + after.Length);
        output.AddRange(before);
        output.AddRange(ids);
        output.AddRange(after);
        return output;
    }
}
