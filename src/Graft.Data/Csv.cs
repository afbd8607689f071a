using System.Text;

namespace Graft.Data;

/// <summary>
/// RFC 4180 CSV: fields split on commas, quoted fields may hold commas, doubled quotes and newlines;
/// records end at LF or CRLF; blank lines are skipped (as pandas does). A quote inside an unquoted
/// field is kept as text, as pandas keeps it.
/// </summary>
internal static class Csv
{
    /// <summary>Each record with the 1-based line it starts on.</summary>
    public static IEnumerable<(long Line, List<string> Fields)> Read(string file, string text)
    {
        int pos = 0;
        long line = 1;
        if (text.Length > 0 && text[0] == '\uFEFF') pos = 1;
        var field = new StringBuilder();
        while (pos < text.Length)
        {
            if (text[pos] == '\n' || (text[pos] == '\r' && pos + 1 < text.Length && text[pos + 1] == '\n'))
            {
                pos += text[pos] == '\r' ? 2 : 1;
                line++;
                continue;
            }
            long start = line;
            var fields = new List<string>();
            while (true)
            {
                field.Clear();
                if (pos < text.Length && text[pos] == '"')
                {
                    pos++;
                    while (true)
                    {
                        if (pos >= text.Length)
                            throw new DataFormatException(file, DataFormatException.Line(start), "quoted field is never closed");
                        char c = text[pos++];
                        if (c == '"')
                        {
                            if (pos < text.Length && text[pos] == '"') { field.Append('"'); pos++; }
                            else break;
                        }
                        else
                        {
                            if (c == '\n') line++;
                            field.Append(c);
                        }
                    }
                    if (pos < text.Length && text[pos] is not (',' or '\n' or '\r'))
                        throw new DataFormatException(file, DataFormatException.Line(line), $"unexpected '{text[pos]}' after a closing quote");
                }
                else
                {
                    while (pos < text.Length && text[pos] is not (',' or '\n' or '\r'))
                        field.Append(text[pos++]);
                }
                fields.Add(field.ToString());
                if (pos < text.Length && text[pos] == ',') { pos++; continue; }
                if (pos < text.Length && text[pos] == '\r' && !(pos + 1 < text.Length && text[pos + 1] == '\n'))
                    throw new DataFormatException(file, DataFormatException.Line(line), "bare carriage return outside quotes");
                break;
            }
            yield return (start, fields);
        }
    }

    /// <summary>One CSV record with LF ending; fields quoted only when they must be.</summary>
    public static void AppendRecord(StringBuilder output, IEnumerable<string> fields)
    {
        bool first = true;
        foreach (var field in fields)
        {
            if (!first) output.Append(',');
            first = false;
            if (field.AsSpan().IndexOfAny(",\"\r\n") >= 0)
                output.Append('"').Append(field.Replace("\"", "\"\"")).Append('"');
            else
                output.Append(field);
        }
        output.Append('\n');
    }
}
