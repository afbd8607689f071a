using System.Globalization;
using System.Runtime.CompilerServices;
using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>
/// A fingerprint of a base's weights (<see cref="SampledFingerprint"/>): the config's shape fields, then every tensor
/// under a canonical name. A 7B base costs about 20 MB of reads.
/// </summary>
/// <remarks>
/// Names are the decoder's internal layout (layer i, role), not the file's, so the same weights give the same
/// fingerprint whether sharded or not; InternLM2's fused q/k/v are hashed as the split parts the decoder runs.
/// </remarks>
public static class BaseFingerprint
{
    public const string Scheme = SampledFingerprint.Scheme;
    public const int WholeTensorBytes = SampledFingerprint.WholeTensorBytes;

    private static readonly ConditionalWeakTable<DecoderModel, string> Computed = new();

    /// <summary>"sha256:" and 64 hex digits; computed once per loaded model.</summary>
    public static string Of(DecoderModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Computed.GetValue(model, m => Compute(m.Config, m.Weights));
    }

    public static string Compute(LlmConfig config, DecoderWeights weights)
    {
        using var fingerprint = new SampledFingerprint();
        fingerprint.AddText(string.Join(",", config.Family, config.Architecture, config.VocabSize, config.HiddenSize, config.IntermediateSize, config.NumLayers,
            config.NumHeads, config.NumKeyValueHeads, config.HeadDim, config.TieWordEmbeddings, config.QkvBias, config.OutputBias, config.MlpBias,
            config.RopeTheta.ToString("R", CultureInfo.InvariantCulture), config.RmsNormEps.ToString("R", CultureInfo.InvariantCulture)));
        foreach (var (name, tensor) in Named(weights)) fingerprint.AddTensor(name, tensor);
        return fingerprint.Finish();
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
