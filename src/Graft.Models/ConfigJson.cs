using System.Globalization;
using System.Text.Json;

namespace Graft.Models;

/// <summary>Writes the JSON of Hugging Face config files (config.json, generation_config.json, preprocessor_config.json) from key maps.</summary>
internal static class ConfigJson
{
    /// <summary>An object of the given keys in order; values are numbers, strings, booleans, null, arrays or nested key maps.</summary>
    public static void WriteObject(Utf8JsonWriter w, IEnumerable<KeyValuePair<string, object?>> keys)
    {
        w.WriteStartObject();
        foreach (var (key, value) in keys)
        {
            w.WritePropertyName(key);
            WriteValue(w, value);
        }
        w.WriteEndObject();
    }

    private static void WriteValue(Utf8JsonWriter w, object? value)
    {
        switch (value)
        {
            case null: w.WriteNullValue(); break;
            case bool b: w.WriteBooleanValue(b); break;
            case int i: w.WriteNumberValue(i); break;
            case float f: w.WriteNumberValue(Decimal(f.ToString("R", CultureInfo.InvariantCulture))); break;
            case double d: w.WriteNumberValue(Decimal(d.ToString("R", CultureInfo.InvariantCulture))); break;
            case string s: w.WriteStringValue(s); break;
            case int[] ids:
                w.WriteStartArray();
                foreach (int id in ids) w.WriteNumberValue(id);
                w.WriteEndArray();
                break;
            case IReadOnlyList<double> numbers:
                w.WriteStartArray();
                foreach (double number in numbers) WriteValue(w, number);
                w.WriteEndArray();
                break;
            case string[] names:
                w.WriteStartArray();
                foreach (var name in names) w.WriteStringValue(name);
                w.WriteEndArray();
                break;
            case IEnumerable<KeyValuePair<string, object?>> nested:
                WriteObject(w, nested.OrderBy(k => k.Key, StringComparer.Ordinal));
                break;
            default:
                throw new ArgumentException($"cannot write {value.GetType().Name} into config.json");
        }
    }

    /// <summary>
    /// The shortest text that reads back as the same value (1e-06, not 9.99999997e-07), as a decimal so that whole
    /// numbers keep Python's ".0" (8.0, as transformers writes a float) and the writer's indentation is kept.
    /// </summary>
    private static decimal Decimal(string shortest)
    {
        if (!shortest.Contains('.') && !shortest.Contains('E')) shortest += ".0";
        return decimal.Parse(shortest, NumberStyles.Float, CultureInfo.InvariantCulture);
    }
}
