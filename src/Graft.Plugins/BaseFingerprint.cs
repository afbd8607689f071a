using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>
/// A fingerprint of a base's weights, quick on a multi-GB checkpoint: SHA-256 over the config's shape fields, then,
/// for every tensor in a fixed order under a canonical name, its name, type, shape and sampled bytes. A tensor of
/// at most <see cref="WholeTensorBytes"/> is hashed whole; a larger one by <see cref="Samples"/> windows of
/// <see cref="SampleBytes"/>: the first, the last and evenly strided ones between (at most 64 KiB per tensor, so a
/// 7B base costs about 20 MB of reads).
/// </summary>
/// <remarks>
/// Fine-tuning by gradient descent moves practically every element of every tensor it trains, so the samples see it.
/// The limit is deliberate: a change confined to bytes no window covers (say, a few edited rows of a large embedding)
/// goes unnoticed. Names are the decoder's internal layout (layer i, role), not the file's, so the same weights give
/// the same fingerprint whether sharded or not; InternLM2's fused q/k/v are hashed as the split parts the decoder runs.
/// </remarks>
public static class BaseFingerprint
{
    public const string Scheme = "graft-sampled-v1";
    public const int SampleBytes = 4096;
    public const int Samples = 16;
    public const int WholeTensorBytes = Samples * SampleBytes;

    private static readonly ConditionalWeakTable<DecoderModel, string> Computed = new();

    /// <summary>"sha256:" and 64 hex digits; computed once per loaded model.</summary>
    public static string Of(DecoderModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Computed.GetValue(model, m => Compute(m.Config, m.Weights));
    }

    public static string Compute(LlmConfig config, DecoderWeights weights)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string s) => hash.AppendData(Encoding.UTF8.GetBytes(s + "\n"));

        Text(Scheme);
        Text(string.Join(",", config.Family, config.Architecture, config.VocabSize, config.HiddenSize, config.IntermediateSize, config.NumLayers,
            config.NumHeads, config.NumKeyValueHeads, config.HeadDim, config.TieWordEmbeddings, config.QkvBias, config.OutputBias, config.MlpBias,
            config.RopeTheta.ToString("R", CultureInfo.InvariantCulture), config.RmsNormEps.ToString("R", CultureInfo.InvariantCulture)));
        foreach (var (name, tensor) in Named(weights))
        {
            var bytes = tensor.DType == DType.F32 ? MemoryMarshal.AsBytes(tensor.Span) : MemoryMarshal.AsBytes(tensor.HalfBits);
            Text($"{name} {tensor.DType} {tensor.ShapeString} {bytes.Length}");
            if (bytes.Length <= WholeTensorBytes)
            {
                hash.AppendData(bytes);
                continue;
            }
            long stride = (bytes.Length - SampleBytes) / (Samples - 1);
            for (int s = 0; s < Samples; s++)
            {
                int start = s == Samples - 1 ? bytes.Length - SampleBytes : (int)(s * stride);
                hash.AppendData(bytes.Slice(start, SampleBytes));
            }
        }
        return "sha256:" + Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static IEnumerable<(string Name, Tensor Tensor)> Named(DecoderWeights w)
    {
        yield return ("embedding", w.Embedding);
        for (int i = 0; i < w.Layers.Length; i++)
        {
            var l = w.Layers[i];
            (string, Tensor?)[] roles =
            [
                ("attention_norm", l.AttentionNorm), ("query", l.Query), ("key", l.Key), ("value", l.Value), ("output", l.Output),
                ("query_bias", l.QueryBias), ("key_bias", l.KeyBias), ("value_bias", l.ValueBias), ("output_bias", l.OutputBias),
                ("ffn_norm", l.FfnNorm), ("gate", l.Gate), ("up", l.Up), ("down", l.Down),
                ("gate_bias", l.GateBias), ("up_bias", l.UpBias), ("down_bias", l.DownBias),
            ];
            foreach (var (role, tensor) in roles)
                if (tensor is not null) yield return ($"layers.{i}.{role}", tensor);
        }
        yield return ("final_norm", w.FinalNorm);
        if (!ReferenceEquals(w.Head, w.Embedding)) yield return ("head", w.Head);
    }
}
