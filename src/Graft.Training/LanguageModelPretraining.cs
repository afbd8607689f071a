using Graft.Models.Llm;
using Graft.Tensors;

namespace Graft.Training;

/// <summary>
/// An endless token stream cut into training rows: documents (token ids) are joined, each followed by a separator
/// (&lt;|endoftext|&gt;), and row r is the stream from r·T to r·T + T, whose first T tokens are the inputs and last T the
/// targets (every token is a target exactly once). Documents run across row boundaries, as in GPT pre-training.
/// </summary>
public sealed class PackedSequences(Func<int[]> nextDocument, int separator)
{
    private readonly List<int> _stream = [];

    /// <summary>Documents drawn so far.</summary>
    public long Documents { get; private set; }

    /// <summary>B rows of T inputs and their T targets, each laid out row after row.</summary>
    public (int[] Inputs, int[] Targets) NextBatch(int batch, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        var inputs = new int[batch * length];
        var targets = new int[batch * length];
        for (int row = 0; row < batch; row++)
        {
            while (_stream.Count < length + 1)
            {
                var document = nextDocument();
                if (document.Length == 0) throw new InvalidOperationException("the document source returned an empty document");
                _stream.AddRange(document);
                _stream.Add(separator);
                Documents++;
            }
            for (int i = 0; i < length; i++)
            {
                inputs[row * length + i] = _stream[i];
                targets[row * length + i] = _stream[i + 1];
            }
            _stream.RemoveRange(0, length);
        }
        return (inputs, targets);
    }
}

/// <summary>
/// Next-token pre-training of a whole decoder on the engine: B packed rows of T tokens per step through
/// <see cref="DecoderModel.ForwardBatch"/>, mean cross-entropy over every position, then the shared
/// <see cref="PretrainingLoop"/> (clipping, AdamW, warm-up + cosine). Deterministic for a given model, data and schedule.
/// </summary>
public static class LanguageModelPretraining
{
    /// <summary>
    /// Trains <paramref name="model"/>'s weights in place; every tensor must be trainable (<see cref="DecoderWeights.CreateRandom"/>
    /// or <see cref="DecoderWeights.ToTrainable"/>). Items in the result and progress are tokens.
    /// </summary>
    public static PretrainingResult Run(DecoderModel model, PackedSequences data, PretrainingSchedule schedule, int batchSize, int sequenceLength,
        IProgress<PretrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sequenceLength);
        var frozen = model.Weights.All().FirstOrDefault(t => !t.RequiresGrad);
        if (frozen is not null) throw new ArgumentException($"pre-training trains every weight, but '{frozen.Name}' is frozen; use DecoderWeights.ToTrainable()", nameof(model));
        if (sequenceLength > model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"rows of {sequenceLength} tokens exceed the model's context of {model.Config.MaxPositionEmbeddings}", nameof(sequenceLength));
        var named = model.Weights.HuggingFaceTensors(model.Config).Select(t => (t.Key, t.Value)).ToList();
        return PretrainingLoop.Run("base", named, schedule, _ =>
        {
            var (inputs, targets) = data.NextBatch(batchSize, sequenceLength);
            return (Ops.CrossEntropy(model.ForwardBatch(inputs, batchSize), targets), inputs.Length);
        }, progress, cancellationToken);
    }
}
