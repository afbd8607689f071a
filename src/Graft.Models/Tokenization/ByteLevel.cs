using System.Text;

namespace Graft.Models.Tokenization;

/// <summary>
/// GPT-2's reversible map between the 256 byte values and 256 printable characters: printable Latin-1 bytes
/// map to themselves, the other 68 (controls, space, soft hyphen...) to U+0100 upward, so that a byte-level
/// token never contains whitespace or control characters.
/// </summary>
public static class ByteLevel
{
    internal static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>The stand-in character of each byte value 0..255: the 256 symbols every byte-level vocabulary starts from.</summary>
    public static IReadOnlyList<char> Alphabet { get; } = Array.AsReadOnly(ByteToChar);
    private static readonly short[] CharToByte = BuildCharToByte();

    /// <summary>The text's UTF-8 bytes as their stand-in characters.</summary>
    public static string Encode(string text)
    {
        int byteCount = Encoding.UTF8.GetByteCount(text);
        Span<byte> bytes = byteCount <= 512 ? stackalloc byte[byteCount] : new byte[byteCount];
        Encoding.UTF8.GetBytes(text, bytes);
        return string.Create(byteCount, bytes.ToArray(), static (chars, b) =>
        {
            for (int i = 0; i < b.Length; i++) chars[i] = ByteToChar[b[i]];
        });
    }

    /// <summary>Appends the bytes a token stands for; a token with a char outside the map (an added token with a space, say) contributes its own UTF-8 bytes, as the reference does.</summary>
    internal static void AppendBytes(string token, List<byte> output)
    {
        foreach (var c in token)
        {
            if (c >= CharToByte.Length || CharToByte[c] < 0)
            {
                output.AddRange(Encoding.UTF8.GetBytes(token));
                return;
            }
        }
        foreach (var c in token) output.Add((byte)CharToByte[c]);
    }

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            bool visible = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = visible ? (char)b : (char)(256 + extra++);
        }
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var map = new short[256 + 68];
        Array.Fill(map, (short)-1);
        for (int b = 0; b < 256; b++) map[ByteToChar[b]] = (short)b;
        return map;
    }
}
