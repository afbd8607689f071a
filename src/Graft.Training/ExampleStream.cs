using Graft.Data;

namespace Graft.Training;

/// <summary>
/// The order a stage sees its examples in, fixed by a seed. Each source is a pool (split into its image and text-only
/// examples when the mix sets a text share) visited in a shuffled order, reshuffled each time it runs out. Each draw
/// first picks text-only with probability <see cref="DataMix.TextShare"/> (when set), then a pool in proportion to its
/// source's weight, then that pool's next example. The stream is a pure function of the seed and the number of draws,
/// so a resumed run replays <see cref="Drawn"/> draws to stand exactly where the interrupted one stood.
/// </summary>
public sealed class ExampleStream
{
    private readonly Pool[] _image;
    private readonly Pool[] _text;
    private readonly Pool[] _all;
    private readonly double? _textShare;
    private readonly SeededRandom _choice;

    /// <param name="sources">Each source's examples (already filtered) and weight.</param>
    public ExampleStream(IReadOnlyList<(IReadOnlyList<TrainingExample> Examples, double Weight)> sources, double? textShare, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(sources);
        _textShare = textShare;
        ulong state = seed;
        _choice = new SeededRandom(SeededRandom.SplitMix64(ref state));
        var image = new List<Pool>();
        var text = new List<Pool>();
        var all = new List<Pool>();
        foreach (var (examples, weight) in sources)
        {
            if (textShare is null)
            {
                if (examples.Count > 0) all.Add(new Pool(examples, weight, SeededRandom.SplitMix64(ref state)));
                continue;
            }
            var withImage = examples.Where(e => e.HasImage).ToList();
            var textOnly = examples.Where(e => !e.HasImage).ToList();
            if (withImage.Count > 0) image.Add(new Pool(withImage, weight, SeededRandom.SplitMix64(ref state)));
            if (textOnly.Count > 0) text.Add(new Pool(textOnly, weight, SeededRandom.SplitMix64(ref state)));
        }
        (_image, _text, _all) = (image.ToArray(), text.ToArray(), all.ToArray());
        if (textShare is null && _all.Length == 0) throw new ArgumentException("the data mix holds no examples");
        if (textShare > 0 && _text.Length == 0)
            throw new ArgumentException($"text share {textShare} asks for text-only examples, but no source has any (add one, e.g. alpaca:FILE or mmlu:DIR:SPLIT, or set the share to 0)");
        if (textShare < 1 && _image.Length == 0)
            throw new ArgumentException($"text share {textShare} asks for examples with images, but no source has any");
        Count = sources.Sum(s => s.Examples.Count);
    }

    /// <summary>Examples in all sources together (one epoch).</summary>
    public int Count { get; }

    /// <summary>Examples drawn so far.</summary>
    public long Drawn { get; private set; }

    public TrainingExample Next()
    {
        Drawn++;
        var pools = _textShare is double share ? (_choice.NextDouble() < share ? _text : _image) : _all;
        return Pick(pools).Next();
    }

    /// <summary>Draws <paramref name="count"/> examples and drops them: where a stream that had drawn that many stands.</summary>
    public void Skip(long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        for (long i = 0; i < count; i++) Next();
    }

    private Pool Pick(Pool[] pools)
    {
        if (pools.Length == 1) return pools[0];
        double total = 0;
        foreach (var pool in pools) total += pool.Weight;
        double point = _choice.NextDouble() * total;
        foreach (var pool in pools)
        {
            if (point < pool.Weight) return pool;
            point -= pool.Weight;
        }
        return pools[^1];
    }

    private sealed class Pool(IReadOnlyList<TrainingExample> examples, double weight, ulong seed)
    {
        private readonly SeededRandom _random = new(seed);
        private readonly int[] _order = Enumerable.Range(0, examples.Count).ToArray();
        private int _next = examples.Count;

        public double Weight { get; } = weight;

        public TrainingExample Next()
        {
            if (_next == _order.Length)
            {
                _random.Shuffle(_order);
                _next = 0;
            }
            return examples[_order[_next++]];
        }
    }
}
