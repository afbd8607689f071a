using Graft.Models.Imaging;
using Graft.Tensors;

namespace Graft.Plugins;

/// <summary>A piece of a prompt: token ids, or one image.</summary>
public abstract record PromptPart;

/// <summary>Token ids; <paramref name="IsAssistant"/> marks the tokens the loss is computed on.</summary>
public sealed record TextPart(int[] Ids, bool IsAssistant = false) : PromptPart;

/// <summary>
/// One image: decoded pixels for the plug-in's vision front end, or features [N, d_v] it already produced
/// (precomputed), exactly one of the two.
/// </summary>
public sealed record ImagePart : PromptPart
{
    public ImagePart(RgbImage image) => Image = image ?? throw new ArgumentNullException(nameof(image));

    public ImagePart(Tensor features)
    {
        ArgumentNullException.ThrowIfNull(features);
        if (features.Rank != 2) throw new ArgumentException($"image features must be [N, d_v], got {features.ShapeString}", nameof(features));
        Features = features;
    }

    public RgbImage? Image { get; }
    public Tensor? Features { get; }

    /// <summary>The precomputed features, or the pixels encoded by <paramref name="vision"/> (which <paramref name="design"/> needs then).</summary>
    public Tensor FeaturesFrom(IVisionFrontEnd? vision, string design)
    {
        if (Features is not null) return Features;
        if (vision is null) throw new InvalidOperationException($"{design}: an image given as pixels needs a vision front end; load the plug-in with one, or give precomputed features");
        return vision.Encode(Image!);
    }
}

/// <summary>A prompt as text pieces (already tokenized) and images in order: what a request carries.</summary>
public sealed class MultimodalPrompt
{
    /// <summary>The target that the loss ignores (Ops.CrossEntropy's default ignore index).</summary>
    public const int IgnoreTarget = -100;

    public MultimodalPrompt(IReadOnlyList<PromptPart> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        if (parts.Count == 0) throw new ArgumentException("a prompt needs at least one part", nameof(parts));
        for (int i = 0; i < parts.Count; i++)
        {
            if (parts[i] is null) throw new ArgumentException($"prompt part {i} is null", nameof(parts));
            if (parts[i] is TextPart { Ids.Length: 0 }) throw new ArgumentException($"prompt part {i} has no token ids", nameof(parts));
        }
        Parts = parts.ToArray();
        HasImage = Parts.Any(p => p is ImagePart);
    }

    public IReadOnlyList<PromptPart> Parts { get; }

    /// <summary>False for a text-only request, which the host routes to the base alone.</summary>
    public bool HasImage { get; }

    public static MultimodalPrompt FromIds(int[] ids) => new([new TextPart(ids)]);

    /// <summary>
    /// Splits <paramref name="text"/> at each <paramref name="placeholder"/> (LLaVA's "&lt;image&gt;"), tokenizes the
    /// pieces with <paramref name="encode"/> and puts the images, in order, where the placeholders were.
    /// </summary>
    public static MultimodalPrompt Parse(string text, IReadOnlyList<ImagePart> images, Func<string, int[]> encode, string placeholder = "<image>")
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(encode);
        var pieces = text.Split(placeholder);
        if (pieces.Length - 1 != images.Count)
            throw new ArgumentException($"the prompt has {pieces.Length - 1} '{placeholder}' placeholder(s) for {images.Count} image(s)", nameof(images));
        var parts = new List<PromptPart>();
        for (int i = 0; i < pieces.Length; i++)
        {
            if (pieces[i].Length > 0)
            {
                var ids = encode(pieces[i]);
                if (ids.Length > 0) parts.Add(new TextPart(ids));
            }
            if (i < images.Count) parts.Add(images[i]);
        }
        return new MultimodalPrompt(parts);
    }

    /// <summary>All token ids of a text-only prompt.</summary>
    public int[] TextIds()
    {
        if (HasImage) throw new InvalidOperationException("the prompt holds an image; it has no plain token sequence");
        return Parts.Cast<TextPart>().SelectMany(p => p.Ids).ToArray();
    }

    /// <summary>
    /// LLaVA's layout: each text part embedded by <paramref name="embedText"/> and each image replaced by the rows
    /// <paramref name="embedImage"/> gives for it, in prompt order. Returns the embeddings [T, C], which positions hold
    /// image rows, and the next-token targets of that layout.
    /// </summary>
    internal (Tensor Embeddings, bool[] ImageMask, int[] Targets) Lay(Func<int[], Tensor> embedText, Func<ImagePart, Tensor> embedImage)
    {
        var pieces = new List<Tensor>(Parts.Count);
        var lengths = new List<int>(Parts.Count);
        var mask = new List<bool>();
        foreach (var part in Parts)
        {
            var piece = part switch
            {
                TextPart text => embedText(text.Ids),
                ImagePart image => embedImage(image),
                _ => throw new ArgumentException($"cannot place a {part.GetType().Name}"),
            };
            pieces.Add(piece);
            lengths.Add(piece.Shape[0]);
            mask.AddRange(Enumerable.Repeat(part is ImagePart, piece.Shape[0]));
        }
        var embeddings = pieces.Count == 1 ? pieces[0] : Ops.Concat(pieces, 0);
        return (embeddings, mask.ToArray(), Targets(lengths));
    }

    /// <summary>
    /// Next-token targets for a layout where each part takes <paramref name="partLengths"/>[i] positions: target[i] is the
    /// token at i + 1 when it is an assistant token, else <see cref="IgnoreTarget"/>.
    /// </summary>
    internal int[] Targets(IReadOnlyList<int> partLengths)
    {
        int total = partLengths.Sum();
        var targets = new int[total];
        Array.Fill(targets, IgnoreTarget);
        int position = 0;
        for (int p = 0; p < Parts.Count; p++)
        {
            if (Parts[p] is TextPart { IsAssistant: true } text)
                for (int j = 0; j < text.Ids.Length; j++)
                    if (position + j > 0) targets[position + j - 1] = text.Ids[j];
            position += partLengths[p];
        }
        return targets;
    }
}
