using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Graft.Models.Tokenization;

/// <summary>
/// A SentencePiece <c>tokenizer.model</c> (the ModelProto protobuf of google/sentencepiece) turned into the
/// <c>tokenizer.json</c> that transformers' LlamaConverter writes for it, which <see cref="Tokenizer"/> runs:
/// a BPE model over the pieces in id order with byte fallback, merges ordered by piece score (higher first; each
/// piece's splits into two known pieces, by the ids of the two halves), the normalizer Prepend("▁") + Replace(" ", "▁"),
/// BOS added by the post-processor, and the decoder Replace("▁", " "), ByteFallback, Fuse, Strip(1 leading space).
/// Llama 1/2, Vicuna, LLaVA-1.5 and LaVIN ship such models. Unigram models (T5, ...) are refused.
/// </summary>
public static class SentencePieceConverter
{
    private const int Normal = 1;

    public sealed record Piece(string Text, float Score, int Type);

    /// <summary>The parts of a ModelProto the conversion reads.</summary>
    public sealed record Model(IReadOnlyList<Piece> Pieces, int ModelType, bool ByteFallback, bool AddDummyPrefix, int UnkId, int BosId, int EosId);

    public static Model Parse(ReadOnlySpan<byte> bytes, string file)
    {
        var pieces = new List<Piece>();
        int modelType = 1, unk = 0, bos = 1, eos = 2;
        bool byteFallback = false, dummyPrefix = true;
        var reader = new ProtoReader(bytes.ToArray(), file);
        while (reader.Next(out int field, out int wire))
        {
            if (field == 1 && wire == 2)
            {
                var piece = reader.Message();
                string text = "";
                float score = 0;
                int type = Normal;
                while (piece.Next(out int f, out int w))
                {
                    if (f == 1 && w == 2) text = piece.String();
                    else if (f == 2 && w == 5) score = piece.Float();
                    else if (f == 3 && w == 0) type = (int)piece.Varint();
                    else piece.Skip(w);
                }
                pieces.Add(new Piece(text, score, type));
            }
            else if (field == 2 && wire == 2)
            {
                var spec = reader.Message();
                while (spec.Next(out int f, out int w))
                {
                    if (w == 0 && f is 3 or 35 or 40 or 41 or 42)
                    {
                        long v = spec.Varint();
                        if (f == 3) modelType = (int)v;
                        else if (f == 35) byteFallback = v != 0;
                        else if (f == 40) unk = (int)v;
                        else if (f == 41) bos = (int)v;
                        else eos = (int)v;
                    }
                    else spec.Skip(w);
                }
            }
            else if (field == 3 && wire == 2)
            {
                var spec = reader.Message();
                while (spec.Next(out int f, out int w))
                {
                    if (f == 3 && w == 0) dummyPrefix = spec.Varint() != 0;
                    else spec.Skip(w);
                }
            }
            else reader.Skip(wire);
        }
        if (pieces.Count == 0) throw new TokenizerFormatException(file, "pieces", "the SentencePiece model holds no pieces");
        return new Model(pieces, modelType, byteFallback, dummyPrefix, unk, bos, eos);
    }

    /// <summary>The tokenizer.json text for a tokenizer.model's bytes; <paramref name="file"/> names it in errors.</summary>
    public static string ToTokenizerJson(ReadOnlySpan<byte> bytes, string file)
    {
        var model = Parse(bytes, file);
        if (model.ModelType != 2)
            throw new TokenizerFormatException(file, "trainer_spec.model_type", $"model type {model.ModelType} is not BPE (2); Unigram SentencePiece models are not supported");
        var pieces = model.Pieces;
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < pieces.Count; i++)
            if (!vocab.TryAdd(pieces[i].Text, i)) throw new TokenizerFormatException(file, "pieces", $"piece '{pieces[i].Text}' appears twice (ids {vocab[pieces[i].Text]} and {i})");
        foreach (var (id, what) in new[] { (model.UnkId, "unk_id"), (model.BosId, "bos_id"), (model.EosId, "eos_id") })
            if (id < 0 || id >= pieces.Count) throw new TokenizerFormatException(file, $"trainer_spec.{what}", $"{id} is not a piece id");

        // transformers' SentencePieceExtractor: every split of a piece into two known pieces, ordered by the halves' ids,
        // then all of them by the merged piece's score, highest first (a stable sort, as Python's sorted).
        var merges = new List<(string Left, string Right, float Score, int Order)>();
        foreach (var piece in pieces)
        {
            var local = new List<(string, string, float, int)>();
            var text = piece.Text;
            for (int i = 1; i < text.Length; i++)
            {
                if (char.IsLowSurrogate(text[i])) continue;
                string left = text[..i], right = text[i..];
                if (vocab.ContainsKey(left) && vocab.ContainsKey(right)) local.Add((left, right, piece.Score, 0));
            }
            merges.AddRange(local.OrderBy(m => vocab[m.Item1]).ThenBy(m => vocab[m.Item2]).Select((m, k) => (m.Item1, m.Item2, m.Item3, merges.Count + k)));
        }
        var ordered = merges.OrderByDescending(m => m.Score).ThenBy(m => m.Order).ToList();

        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("version", "1.0");
            json.WriteNull("truncation");
            json.WriteNull("padding");
            json.WriteStartArray("added_tokens");
            foreach (int id in new[] { model.UnkId, model.BosId, model.EosId }.Distinct().Order())
            {
                json.WriteStartObject();
                json.WriteNumber("id", id);
                json.WriteString("content", pieces[id].Text);
                json.WriteBoolean("single_word", false);
                json.WriteBoolean("lstrip", false);
                json.WriteBoolean("rstrip", false);
                json.WriteBoolean("normalized", false);
                json.WriteBoolean("special", true);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteStartObject("normalizer");
            json.WriteString("type", "Sequence");
            json.WriteStartArray("normalizers");
            if (model.AddDummyPrefix)
            {
                json.WriteStartObject();
                json.WriteString("type", "Prepend");
                json.WriteString("prepend", "\u2581");
                json.WriteEndObject();
            }
            json.WriteStartObject();
            json.WriteString("type", "Replace");
            json.WriteStartObject("pattern");
            json.WriteString("String", " ");
            json.WriteEndObject();
            json.WriteString("content", "\u2581");
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteNull("pre_tokenizer");
            string bos = pieces[model.BosId].Text;
            json.WriteStartObject("post_processor");
            json.WriteString("type", "TemplateProcessing");
            json.WriteStartArray("single");
            WriteSpecial(json, bos, 0);
            WriteSequence(json, "A", 0);
            json.WriteEndArray();
            json.WriteStartArray("pair");
            WriteSpecial(json, bos, 0);
            WriteSequence(json, "A", 0);
            WriteSpecial(json, bos, 1);
            WriteSequence(json, "B", 1);
            json.WriteEndArray();
            json.WriteStartObject("special_tokens");
            json.WriteStartObject(bos);
            json.WriteString("id", bos);
            json.WriteStartArray("ids");
            json.WriteNumberValue(model.BosId);
            json.WriteEndArray();
            json.WriteStartArray("tokens");
            json.WriteStringValue(bos);
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteEndObject();
            json.WriteEndObject();
            json.WriteStartObject("decoder");
            json.WriteString("type", "Sequence");
            json.WriteStartArray("decoders");
            json.WriteStartObject();
            json.WriteString("type", "Replace");
            json.WriteStartObject("pattern");
            json.WriteString("String", "\u2581");
            json.WriteEndObject();
            json.WriteString("content", " ");
            json.WriteEndObject();
            foreach (var type in new[] { "ByteFallback", "Fuse" })
            {
                json.WriteStartObject();
                json.WriteString("type", type);
                json.WriteEndObject();
            }
            json.WriteStartObject();
            json.WriteString("type", "Strip");
            json.WriteString("content", " ");
            json.WriteNumber("start", 1);
            json.WriteNumber("stop", 0);
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteStartObject("model");
            json.WriteString("type", "BPE");
            json.WriteNull("dropout");
            json.WriteString("unk_token", pieces[model.UnkId].Text);
            json.WriteNull("continuing_subword_prefix");
            json.WriteNull("end_of_word_suffix");
            json.WriteBoolean("fuse_unk", true);
            json.WriteBoolean("byte_fallback", model.ByteFallback);
            json.WriteBoolean("ignore_merges", false);
            json.WriteStartObject("vocab");
            for (int i = 0; i < pieces.Count; i++) json.WriteNumber(pieces[i].Text, i);
            json.WriteEndObject();
            json.WriteStartArray("merges");
            foreach (var (left, right, _, _) in ordered) json.WriteStringValue(left + " " + right);
            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }

    private static void WriteSpecial(Utf8JsonWriter json, string token, int typeId)
    {
        json.WriteStartObject();
        json.WriteStartObject("SpecialToken");
        json.WriteString("id", token);
        json.WriteNumber("type_id", typeId);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static void WriteSequence(Utf8JsonWriter json, string id, int typeId)
    {
        json.WriteStartObject();
        json.WriteStartObject("Sequence");
        json.WriteString("id", id);
        json.WriteNumber("type_id", typeId);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    /// <summary>A protobuf wire-format reader over one message, every length checked.</summary>
    private sealed class ProtoReader(byte[] data, string file, int start = 0, int end = -1)
    {
        private int _at = start;
        private readonly int _end = end < 0 ? data.Length : end;

        public bool Next(out int field, out int wire)
        {
            field = wire = 0;
            if (_at >= _end) return false;
            long key = Varint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            if (field <= 0) throw Error("a field number of 0");
            return true;
        }

        public long Varint()
        {
            long value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_at >= _end) throw Error("a varint runs past the end");
                byte b = data[_at++];
                value |= (long)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return value;
            }
            throw Error("a varint longer than 10 bytes");
        }

        public ProtoReader Message()
        {
            int length = Length();
            var inner = new ProtoReader(data, file, _at, _at + length);
            _at += length;
            return inner;
        }

        public string String()
        {
            int length = Length();
            string s;
            try
            {
                s = new UTF8Encoding(false, true).GetString(data, _at, length);
            }
            catch (DecoderFallbackException)
            {
                throw Error("a piece that is not UTF-8");
            }
            _at += length;
            return s;
        }

        public float Float()
        {
            if (_end - _at < 4) throw Error("a float runs past the end");
            float f = BitConverter.ToSingle(data, _at);
            _at += 4;
            return f;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: Advance(8); break;
                case 2: Advance(Length()); break;
                case 5: Advance(4); break;
                default: throw Error($"wire type {wire} is not supported");
            }
        }

        private int Length()
        {
            long length = Varint();
            if (length < 0 || length > _end - _at) throw Error($"a length of {length} runs past the end");
            return (int)length;
        }

        private void Advance(int n)
        {
            if (n > _end - _at) throw Error("a field runs past the end");
            _at += n;
        }

        private TokenizerFormatException Error(string problem) => new(file, $"byte {_at}", $"not a SentencePiece model: {problem}");
    }
}
