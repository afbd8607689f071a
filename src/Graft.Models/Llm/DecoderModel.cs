using Graft.Tensors;

namespace Graft.Models.Llm;

/// <summary>
/// A frozen Llama-family decoder (Llama, Qwen2, InternLM2) loaded from a Hugging Face folder. The families
/// differ only in configuration and weight names, which <see cref="LlmConfig"/> and <see cref="DecoderWeights"/>
/// absorb; this class runs them all the same way.
/// </summary>
public sealed partial class DecoderModel : IDisposable
{
    private readonly CheckpointTensors _checkpoint;

    private DecoderModel(string folder, LlmConfig config, DecoderWeights weights, CheckpointTensors checkpoint)
    {
        Folder = folder;
        Config = config;
        Weights = weights;
        _checkpoint = checkpoint;
    }

    public string Folder { get; }
    public LlmConfig Config { get; }
    public DecoderWeights Weights { get; }

    /// <summary>
    /// Reads config.json and the weights (memory-mapped where the reader allows, in their stored types),
    /// checking every tensor's presence, shape and type before returning. The folder is only read.
    /// </summary>
    public static DecoderModel Load(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"model folder '{folder}' does not exist");
        var config = LlmConfig.Load(Path.Combine(folder, "config.json"));
        var checkpoint = CheckpointTensors.Open(folder);
        try
        {
            return new DecoderModel(folder, config, DecoderWeights.Load(config, checkpoint), checkpoint);
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>Number of parameters (a tied head counted once).</summary>
    public long ParameterCount => Weights.All().Sum(t => (long)t.Length);

    /// <summary>Bytes the weights occupy in their stored types (InternLM2's split q/k/v counted once).</summary>
    public long WeightBytes => Weights.All().Sum(t => (long)t.Length * t.DType.SizeOf());

    /// <summary>Parameter counts by stored type.</summary>
    public IReadOnlyDictionary<DType, long> ParametersByDType =>
        Weights.All().GroupBy(t => t.DType).ToDictionary(g => g.Key, g => g.Sum(t => (long)t.Length));

    public void Dispose() => _checkpoint.Dispose();
}
