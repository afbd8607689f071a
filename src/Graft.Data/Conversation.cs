namespace Graft.Data;

public enum Role { System, User, Assistant }

/// <summary>
/// One turn. <see cref="ImageRefs"/> are indices into <see cref="Conversation.ImagePaths"/>, one per
/// <c>&lt;image&gt;</c> placeholder in <see cref="Text"/>, in order.
/// </summary>
public sealed record Turn(Role Role, string Text, IReadOnlyList<int> ImageRefs)
{
    /// <summary>The loss rule: only assistant turns are trained on; system and user turns are context.</summary>
    public bool IsSupervised => Role == Role.Assistant;
}

/// <summary>A multi-turn example with its images resolved to paths; tokenisation happens in training.</summary>
public sealed record Conversation(string Id, IReadOnlyList<string> ImagePaths, IReadOnlyList<Turn> Turns)
{
    public const string ImagePlaceholder = "<image>";

    /// <summary>Indices of the turns the loss is computed on.</summary>
    public IEnumerable<int> SupervisedTurns => Enumerable.Range(0, Turns.Count).Where(i => Turns[i].IsSupervised);

    public bool HasImages => ImagePaths.Count > 0;

    internal static int CountPlaceholders(string text)
    {
        int count = 0;
        for (int at = text.IndexOf(ImagePlaceholder, StringComparison.Ordinal); at >= 0;
             at = text.IndexOf(ImagePlaceholder, at + ImagePlaceholder.Length, StringComparison.Ordinal))
            count++;
        return count;
    }
}
