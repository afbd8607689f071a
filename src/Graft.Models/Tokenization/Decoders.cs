using System.Globalization;
using System.Text;

namespace Graft.Models.Tokenization;

/// <summary>tokenizer.json `decoder`: turns the token strings of a sequence of ids back into text (decode_chain).</summary>
internal abstract class Decoder
{
    public abstract List<string> DecodeChain(List<string> tokens);

    public static Decoder? Parse(JsonNode? node)
    {
        if (node is not { } n) return null;
        return n.Type switch
        {
            "Sequence" => new SequenceDecoder(n.Required("decoders").Items().Select(i => Parse(i)!).ToArray()),
            "ByteLevel" => new ByteLevelDecoder(),
            "Replace" => new ReplaceDecoder(new ReplaceNormalizer(n)),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Strip" => new StripDecoder(n),
            "Metaspace" => new MetaspaceDecoder(n),
            var other => throw new UnsupportedTokenizerException(n.File, n.Child("type"), $"decoder '{other}' is not supported"),
        };
    }
}

internal sealed class SequenceDecoder(Decoder[] inner) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        foreach (var d in inner) tokens = d.DecodeChain(tokens);
        return tokens;
    }
}

/// <summary>All tokens' bytes joined, then decoded as UTF-8 with U+FFFD for each maximal invalid subsequence.</summary>
internal sealed class ByteLevelDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var t in tokens) ByteLevel.AppendBytes(t, bytes);
        return [Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes))];
    }
}

internal sealed class ReplaceDecoder(ReplaceNormalizer replace) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => tokens.ConvertAll(replace.Normalize);
}

/// <summary>Runs of &lt;0xNN&gt; tokens become their UTF-8 text, or one U+FFFD per byte when the run is not valid UTF-8.</summary>
internal sealed class ByteFallbackDecoder : Decoder
{
    private static readonly UTF8Encoding Strict = new(false, throwOnInvalidBytes: true);

    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        var pending = new List<byte>();
        foreach (var t in tokens)
        {
            if (t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
                && byte.TryParse(t.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var b))
            {
                pending.Add(b);
                continue;
            }
            Flush(pending, output);
            output.Add(t);
        }
        Flush(pending, output);
        return output;
    }

    private static void Flush(List<byte> pending, List<string> output)
    {
        if (pending.Count == 0) return;
        try
        {
            output.Add(Strict.GetString(pending.ToArray()));
        }
        catch (DecoderFallbackException)
        {
            for (int i = 0; i < pending.Count; i++) output.Add("\uFFFD");
        }
        pending.Clear();
    }
}

internal sealed class FuseDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary>Removes up to `start` leading and `stop` trailing `content` chars from each token.</summary>
internal sealed class StripDecoder : Decoder
{
    private readonly char _content;
    private readonly int _start;
    private readonly int _stop;

    public StripDecoder(JsonNode n)
    {
        var content = n.String("content");
        if (content.Length != 1) throw n.Required("content").Malformed("must be a single character");
        _content = content[0];
        _start = n.Int("start");
        _stop = n.Int("stop");
    }

    public override List<string> DecodeChain(List<string> tokens) => tokens.ConvertAll(t =>
    {
        int a = 0, b = t.Length;
        while (a < _start && a < t.Length && t[a] == _content) a++;
        for (int i = 0; i < _stop && b - 1 >= a && t[b - 1] == _content; i++) b--;
        return t[a..b];
    });
}

/// <summary>▁ becomes a space, except that in the first token every ▁ is dropped unless prepend_scheme is never.</summary>
internal sealed class MetaspaceDecoder : Decoder
{
    private readonly char _replacement;
    private readonly bool _dropInFirst;

    public MetaspaceDecoder(JsonNode n)
    {
        var replacement = n.String("replacement");
        if (replacement.Length != 1) throw n.Required("replacement").Malformed("must be a single character");
        _replacement = replacement[0];
        var scheme = n.OptionalString("prepend_scheme") ?? (n.Bool("add_prefix_space", true) ? "always" : "never");
        _dropInFirst = scheme != "never";
    }

    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            var sb = new StringBuilder(tokens[i].Length);
            foreach (var c in tokens[i])
            {
                if (c != _replacement) sb.Append(c);
                else if (i != 0 || !_dropInFirst) sb.Append(' ');
            }
            output.Add(sb.ToString());
        }
        return output;
    }
}
