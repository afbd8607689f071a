using System.Text;
using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Peers;

/// <summary>
/// Writes a Qwen2 decoder's weights as a GGUF v3 file llama.cpp loads: its metadata keys and tensor names
/// (token_embd, blk.N.attn_q, ...; output omitted when tied), F32 vectors, matrices as F32 or BF16 bits unchanged, and a
/// byte-level BPE vocabulary (the 256 byte tokens, then placeholders) so its tokenizer loads; the bench feeds token ids.
/// </summary>
static class GgufWriter
{
    const uint Magic = 0x46554747, Version = 3;
    const int Alignment = 32;
    enum ValueType : uint { UInt32 = 4, Int32 = 5, Float32 = 6, String = 8, Array = 9 }
    const uint GgmlF32 = 0, GgmlBf16 = 30;

    public static void Write(string path, LlmConfig c, DecoderWeights w)
    {
        var tensors = new List<(string Name, Tensor Tensor)> { ("token_embd.weight", w.Embedding) };
        for (int i = 0; i < w.Layers.Length; i++)
        {
            var l = w.Layers[i];
            string p = $"blk.{i}.";
            tensors.AddRange([
                (p + "attn_norm.weight", l.AttentionNorm), (p + "attn_q.weight", l.Query), (p + "attn_q.bias", l.QueryBias!),
                (p + "attn_k.weight", l.Key), (p + "attn_k.bias", l.KeyBias!), (p + "attn_v.weight", l.Value), (p + "attn_v.bias", l.ValueBias!),
                (p + "attn_output.weight", l.Output), (p + "ffn_norm.weight", l.FfnNorm),
                (p + "ffn_gate.weight", l.Gate), (p + "ffn_up.weight", l.Up), (p + "ffn_down.weight", l.Down)]);
        }
        tensors.Add(("output_norm.weight", w.FinalNorm));
        if (!ReferenceEquals(w.Head, w.Embedding)) tensors.Add(("output.weight", w.Head));

        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var writer = new BinaryWriter(stream, Encoding.UTF8);
        var metadata = new List<Action>();
        void Key(string key, ValueType type, Action value) => metadata.Add(() => { WriteString(writer, key); writer.Write((uint)type); value(); });
        Key("general.architecture", ValueType.String, () => WriteString(writer, "qwen2"));
        Key("general.name", ValueType.String, () => WriteString(writer, "graft-bench-random"));
        Key("qwen2.block_count", ValueType.UInt32, () => writer.Write((uint)c.NumLayers));
        Key("qwen2.context_length", ValueType.UInt32, () => writer.Write((uint)c.MaxPositionEmbeddings));
        Key("qwen2.embedding_length", ValueType.UInt32, () => writer.Write((uint)c.HiddenSize));
        Key("qwen2.feed_forward_length", ValueType.UInt32, () => writer.Write((uint)c.IntermediateSize));
        Key("qwen2.attention.head_count", ValueType.UInt32, () => writer.Write((uint)c.NumHeads));
        Key("qwen2.attention.head_count_kv", ValueType.UInt32, () => writer.Write((uint)c.NumKeyValueHeads));
        Key("qwen2.rope.freq_base", ValueType.Float32, () => writer.Write((float)c.RopeTheta));
        Key("qwen2.attention.layer_norm_rms_epsilon", ValueType.Float32, () => writer.Write(c.RmsNormEps));
        Key("tokenizer.ggml.model", ValueType.String, () => WriteString(writer, "gpt2"));
        Key("tokenizer.ggml.pre", ValueType.String, () => WriteString(writer, "qwen2"));
        var tokens = Vocabulary(c.VocabSize);
        Key("tokenizer.ggml.tokens", ValueType.Array, () =>
        {
            writer.Write((uint)ValueType.String);
            writer.Write((ulong)tokens.Length);
            foreach (string token in tokens) WriteString(writer, token);
        });
        Key("tokenizer.ggml.token_type", ValueType.Array, () =>
        {
            writer.Write((uint)ValueType.Int32);
            writer.Write((ulong)tokens.Length);
            for (int i = 0; i < tokens.Length; i++) writer.Write(1);
        });
        Key("tokenizer.ggml.merges", ValueType.Array, () =>
        {
            writer.Write((uint)ValueType.String);
            writer.Write(0UL);
        });

        writer.Write(Magic);
        writer.Write(Version);
        writer.Write((ulong)tensors.Count);
        writer.Write((ulong)metadata.Count);
        foreach (var entry in metadata) entry();
        ulong offset = 0;
        foreach (var (name, tensor) in tensors)
        {
            WriteString(writer, name);
            writer.Write((uint)tensor.Rank);
            // GGUF lists dimensions innermost first: a [rows, columns] matrix is ne = [columns, rows].
            for (int d = tensor.Rank - 1; d >= 0; d--) writer.Write((ulong)tensor.Shape[d]);
            writer.Write(tensor.DType == DType.F32 ? GgmlF32 : GgmlBf16);
            writer.Write(offset);
            offset += Padded((ulong)Bytes(tensor));
        }
        Pad(writer);
        foreach (var (_, tensor) in tensors)
        {
            if (tensor.DType == DType.F32) writer.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(tensor.Span));
            else if (tensor.DType == DType.BF16) writer.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(tensor.HalfBits));
            else throw new NotSupportedException($"GGUF writer: {tensor.DType} tensors");
            Pad(writer);
        }
    }

    static long Bytes(Tensor t) => (long)t.Length * (t.DType == DType.F32 ? 4 : 2);

    static ulong Padded(ulong bytes) => (bytes + Alignment - 1) / Alignment * Alignment;

    static void Pad(BinaryWriter writer)
    {
        long position = writer.BaseStream.Position;
        long padded = (position + Alignment - 1) / Alignment * Alignment;
        for (long i = position; i < padded; i++) writer.Write((byte)0);
    }

    static void WriteString(BinaryWriter writer, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        writer.Write((ulong)bytes.Length);
        writer.Write(bytes);
    }

    /// <summary>GPT-2's byte-level alphabet for ids 0..255 (so "\n" is a token), unique placeholders after.</summary>
    static string[] Vocabulary(int size)
    {
        var tokens = new string[size];
        int extra = 0;
        for (int b = 0; b < 256 && b < size; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            tokens[b] = printable ? ((char)b).ToString() : ((char)(256 + extra++)).ToString();
        }
        for (int i = 256; i < size; i++) tokens[i] = $"<graft_{i}>";
        return tokens;
    }
}
