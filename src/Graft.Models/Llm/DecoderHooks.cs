using Graft.Tensors;

namespace Graft.Models.Llm;

/// <summary>
/// The points inside a decoder where a plug-in acts, for one request: a plug-in overrides the ones its design uses
/// and leaves the others passing through. Per-request state (which positions hold image tokens, image features,
/// the plug-in's own KV caches) lives in the subclass instance, created by the plug-in for that request.
/// </summary>
/// <remarks>
/// Every point receives the layer index and the positions of the tokens of the current chunk (all of them for a full
/// forward; the new ones for a cached decode step). Tensors are [T, C] for that chunk. When recording for autograd,
/// whatever a hook builds from trainable tensors is recorded with the rest of the forward.
/// <see cref="DecoderModel.ForwardEmbeddings"/> without hooks runs none of this: the base alone pays nothing.
/// </remarks>
public abstract class DecoderHooks
{
    /// <summary>
    /// The attention mask of every layer for a chunk of <paramref name="queries"/> tokens after <paramref name="queryOffset"/>
    /// cached ones: causal unless the design hides keys (MMA's modality token, which no later token sees). Asked once per forward.
    /// </summary>
    public virtual AttentionMask MaskFor(int queryOffset, int queries) => AttentionMask.Causal(queryOffset);

    /// <summary>Input: the chunk's input embeddings [T, C] before layer 0 (WINGS keeps the text tokens' rows as its textual learner's keys).</summary>
    public virtual Tensor Input(Tensor embeddings, ReadOnlySpan<int> positions) => embeddings;

    /// <summary>Before attention: transforms the normed input of layer <paramref name="layer"/>'s attention (MMA's adapters).</summary>
    public virtual Tensor BeforeAttention(int layer, Tensor normedInput, ReadOnlySpan<int> positions) => normedInput;

    /// <summary>Whether <see cref="BesideAttention"/> of this layer reads the attention weights (computing them costs memory).</summary>
    public virtual bool NeedsAttentionWeights(int layer) => false;

    /// <summary>
    /// Beside attention: receives h after the attention residual (h + Attn(norm(h))) and returns what the FFN sublayer
    /// takes instead (WINGS adds its learners' branch here). <paramref name="attentionWeights"/> [1, H, T, cached + T] is
    /// given when <see cref="NeedsAttentionWeights"/> said so for this layer, else null.
    /// </summary>
    public virtual Tensor BesideAttention(int layer, Tensor hidden, Tensor? attentionWeights, ReadOnlySpan<int> positions) => hidden;

    /// <summary>
    /// Whether layer <paramref name="layer"/>'s attention projections go through <see cref="ProjectAttention"/>; when false
    /// (the default) the layer projects with the base's weights on the plain path and the hook is never called.
    /// </summary>
    public virtual bool ProjectsAttention(int layer) => false;

    /// <summary>
    /// Attention by token: projection <paramref name="projection"/> of rows [T, in] -> [T, out] (the normed input for
    /// query, key and value; the attended heads for the output). The base's projection of this layer is given as a
    /// callable; Mono-InternVL-1.5 runs it on text rows and its visual attention expert on image rows, while one
    /// attention (with the base's mask and rotary embedding) runs over all tokens. Asked only where
    /// <see cref="ProjectsAttention"/> says so.
    /// </summary>
    public virtual Tensor ProjectAttention(int layer, AttentionProjection projection, Tensor input, Func<Tensor, Tensor> baseProjection, ReadOnlySpan<int> positions) =>
        baseProjection(input);

    /// <summary>
    /// FFN by token: the FFN output [T, C] for the normed input, which the decoder adds to the residual. The base FFN of
    /// this layer is given as a callable (Mono-InternVL runs it on text rows and its expert on image rows).
    /// </summary>
    public virtual Tensor FeedForward(int layer, Tensor normedInput, Func<Tensor, Tensor> baseFeedForward, ReadOnlySpan<int> positions) =>
        baseFeedForward(normedInput);

    /// <summary>Extra layers: after frozen layer <paramref name="layer"/>, what the next layer takes (IAA runs its own layers here, see <see cref="DecoderModel.RunLayer"/>).</summary>
    public virtual Tensor AfterLayer(int layer, Tensor hidden, ReadOnlySpan<int> positions) => hidden;

    /// <summary>
    /// Output: logits from the last hidden state [T, C] (or its last row when only the last position is asked for).
    /// Called once per forward, after every layer, so a plug-in's own caches advance here. The base's final norm
    /// and head are given as a callable.
    /// </summary>
    public virtual Tensor Output(Tensor hidden, Func<Tensor, Tensor> baseOutput) => baseOutput(hidden);
}

/// <summary>One of the four projections of an attention block.</summary>
public enum AttentionProjection
{
    Query,
    Key,
    Value,
    Output,
}
