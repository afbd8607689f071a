using System.Text;

namespace Graft.Models.Tokenization;

/// <summary>
/// Canonical Unicode normalization (NFD, NFC). .NET's string.Normalize is a no-op under
/// InvariantGlobalization, which Graft builds with, so the data (combining classes, canonical
/// decompositions, which pairs compose) ships as UnicodeNormalization.txt, generated from Python's
/// unicodedata by tools/reference/tokenizer_golden.py. Hangul syllables are handled algorithmically.
/// </summary>
internal static class UnicodeNormalization
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly Dictionary<int, byte> CombiningClass = [];
    private static readonly Dictionary<int, int[]> Decomposition = [];
    private static readonly Dictionary<long, int> Composition = [];
    // Code points that NFC may change: decomposable, combining, or the second half of a composition.
    // Text with none of them is already NFC, which is most text (CJK, emoji, ASCII) and the fast path.
    private static readonly HashSet<int> MayChangeUnderNfc = [];
    private static readonly bool[] MayChangeUnderNfcBmp = new bool[0x10000];

    static UnicodeNormalization()
    {
        using var stream = typeof(UnicodeNormalization).Assembly.GetManifestResourceStream("Graft.Models.Tokenization.UnicodeNormalization.txt")
            ?? throw new InvalidOperationException("the UnicodeNormalization.txt resource is missing from Graft.Models");
        using var reader = new StreamReader(stream, Encoding.ASCII);
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0 || line[0] == '#') continue;
            var fields = line.Split(';');
            int cp = Convert.ToInt32(fields[0], 16);
            var ccc = byte.Parse(fields[1]);
            if (ccc != 0) CombiningClass[cp] = ccc;
            if (fields[2].Length == 0) continue;
            var parts = Array.ConvertAll(fields[2].Split(' '), p => Convert.ToInt32(p, 16));
            Decomposition[cp] = parts;
            if (fields[3] == "c") Composition[Key(parts[0], parts[1])] = cp;
        }
        foreach (var cp in CombiningClass.Keys.Concat(Decomposition.Keys).Concat(Composition.Keys.Select(k => (int)(k & 0x1FFFFF))))
            MayChangeUnderNfc.Add(cp);
        for (int cp = VBase; cp < TBase + TCount; cp++) MayChangeUnderNfc.Add(cp);
        for (int cp = SBase; cp < SBase + SCount; cp++) MayChangeUnderNfc.Add(cp);
        foreach (var cp in MayChangeUnderNfc) if (cp < 0x10000) MayChangeUnderNfcBmp[cp] = true;
    }

    public static string Nfc(string text) => NeedsWork(text, composed: true) ? Compose(Decompose(text)) : text;
    public static string Nfd(string text) => NeedsWork(text, composed: false) ? ToString(Decompose(text)) : text;

    private static bool NeedsWork(string text, bool composed)
    {
        if (!composed) return text.AsSpan().IndexOfAnyExceptInRange('\0', '\u007F') >= 0;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                if (MayChangeUnderNfc.Contains(char.ConvertToUtf32(c, text[++i]))) return true;
            }
            else if (MayChangeUnderNfcBmp[c]) return true;
        }
        return false;
    }

    private static long Key(int a, int b) => ((long)a << 21) | (uint)b;

    private static int Ccc(int cp) => CombiningClass.TryGetValue(cp, out var c) ? c : 0;

    /// <summary>Full canonical decomposition, then canonical ordering of each run of combining marks.</summary>
    private static List<int> Decompose(string text)
    {
        var output = new List<int>(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            int cp = text[i];
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                cp = char.ConvertToUtf32(text[i], text[++i]);
            Append(cp, output);
        }
        for (int i = 1; i < output.Count; i++)
        {
            // Insertion sort by combining class, stable, never moving a mark past a starter (class 0).
            int cc = Ccc(output[i]);
            if (cc == 0) continue;
            for (int j = i; j > 0 && Ccc(output[j - 1]) > cc; j--) (output[j - 1], output[j]) = (output[j], output[j - 1]);
        }
        return output;
    }

    private static void Append(int cp, List<int> output)
    {
        if (cp is >= SBase and < SBase + SCount)
        {
            int s = cp - SBase;
            output.Add(LBase + s / NCount);
            output.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) output.Add(TBase + s % TCount);
        }
        else if (Decomposition.TryGetValue(cp, out var parts))
        {
            foreach (var p in parts) Append(p, output);
        }
        else output.Add(cp);
    }

    /// <summary>The canonical composition algorithm of UAX #15 over decomposed, ordered code points.</summary>
    private static string Compose(List<int> cps)
    {
        if (cps.Count == 0) return "";
        var output = new List<int>(cps.Count) { cps[0] };
        int starter = Ccc(cps[0]) == 0 ? 0 : -1;
        int lastClass = starter == 0 ? 0 : 256;
        for (int i = 1; i < cps.Count; i++)
        {
            int cp = cps[i], cc = Ccc(cp);
            if (starter >= 0 && (lastClass < cc || lastClass == 0) && TryCompose(output[starter], cp, out var composite))
            {
                output[starter] = composite;
                continue;
            }
            if (cc == 0) starter = output.Count;
            lastClass = cc;
            output.Add(cp);
        }
        return ToString(output);
    }

    private static bool TryCompose(int a, int b, out int composite)
    {
        if (a is >= LBase and < LBase + LCount && b is >= VBase and < VBase + VCount)
        {
            composite = SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
            return true;
        }
        if (a is >= SBase and < SBase + SCount && (a - SBase) % TCount == 0 && b is > TBase and < TBase + TCount)
        {
            composite = a + (b - TBase);
            return true;
        }
        return Composition.TryGetValue(Key(a, b), out composite);
    }

    private static string ToString(List<int> cps)
    {
        var sb = new StringBuilder(cps.Count);
        // A lone surrogate in malformed input passes through unchanged.
        foreach (var cp in cps)
        {
            if (cp < 0x10000) sb.Append((char)cp);
            else sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }
}
