using System.Text;

namespace Graft.Serving;

/// <summary>How client input is echoed in error messages: never unbounded, never invalid text.</summary>
internal static class ErrorText
{
    /// <summary>The most characters of one client value an error message repeats.</summary>
    public const int MaxEchoed = 64;

    /// <summary>The longest error message sent (a last bound over whatever a message was built from).</summary>
    public const int MaxMessage = 2048;

    /// <summary><paramref name="value"/> as an error message may quote it: its first <see cref="MaxEchoed"/> characters and how long it was.</summary>
    public static string Shown(string value)
    {
        if (value.Length <= MaxEchoed) return Valid(value);
        int cut = char.IsHighSurrogate(value[MaxEchoed - 1]) ? MaxEchoed - 1 : MaxEchoed;
        return Valid(value[..cut]) + $"... ({value.Length} characters)";
    }

    /// <summary>The message as sent: at most <see cref="MaxMessage"/> characters, lone surrogates replaced (JSON cannot carry them).</summary>
    public static string Message(string message)
    {
        if (message.Length > MaxMessage)
        {
            int cut = char.IsHighSurrogate(message[MaxMessage - 1]) ? MaxMessage - 1 : MaxMessage;
            message = message[..cut] + "...";
        }
        return Valid(message);
    }

    private static string Valid(string text)
    {
        if (!text.AsSpan().ContainsAnyInRange('\uD800', '\uDFFF')) return text;
        var valid = new StringBuilder(text.Length);
        foreach (var rune in text.EnumerateRunes()) valid.Append(rune.ToString());
        return valid.ToString();
    }
}
