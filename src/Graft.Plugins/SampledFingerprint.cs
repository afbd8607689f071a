using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>
/// The sampled SHA-256 that identifies frozen weights (a base's, a vision tower's) quickly on a multi-GB checkpoint:
/// lines of text (scheme, config fields), then for every tensor in a fixed order its name, type, shape and sampled
/// bytes. A tensor of at most <see cref="WholeTensorBytes"/> is hashed whole; a larger one by <see cref="Samples"/>
/// windows of <see cref="SampleBytes"/>: the first, the last and evenly strided ones between (at most 64 KiB per tensor).
/// </summary>
/// <remarks>
/// Fine-tuning by gradient descent moves practically every element of every tensor it trains, so the samples see it.
/// The limit is deliberate: a change confined to bytes no window covers (say, a few edited rows of a large embedding)
/// goes unnoticed.
/// </remarks>
public sealed class SampledFingerprint : IDisposable
{
    public const string Scheme = "graft-sampled-v1";
    public const int SampleBytes = 4096;
    public const int Samples = 16;
    public const int WholeTensorBytes = Samples * SampleBytes;

    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    /// <summary>Starts a fingerprint with the scheme's name, so fingerprints of another scheme never collide with these.</summary>
    public SampledFingerprint() => AddText(Scheme);

    /// <summary>One line of text (a config's fields).</summary>
    public void AddText(string line) => _hash.AppendData(Encoding.UTF8.GetBytes(line + "\n"));

    /// <summary>A tensor under <paramref name="name"/>: its type, shape and (sampled) stored bytes.</summary>
    public void AddTensor(string name, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var bytes = tensor.DType switch
        {
            DType.F32 => MemoryMarshal.AsBytes(tensor.Span),
            DType.F16 or DType.BF16 => MemoryMarshal.AsBytes(tensor.HalfBits),
            _ => throw new ArgumentException($"tensor '{name}' is {tensor.DType}; only F32, F16 and BF16 weights are fingerprinted", nameof(tensor)),
        };
        AddText($"{name} {tensor.DType} {tensor.ShapeString} {bytes.Length}");
        if (bytes.Length <= WholeTensorBytes)
        {
            _hash.AppendData(bytes);
            return;
        }
        long stride = (bytes.Length - SampleBytes) / (Samples - 1);
        for (int s = 0; s < Samples; s++)
        {
            int start = s == Samples - 1 ? bytes.Length - SampleBytes : (int)(s * stride);
            _hash.AppendData(bytes.Slice(start, SampleBytes));
        }
    }

    /// <summary>"sha256:" and 64 hex digits.</summary>
    public string Finish() => "sha256:" + Convert.ToHexStringLower(_hash.GetHashAndReset());

    public void Dispose() => _hash.Dispose();
}
