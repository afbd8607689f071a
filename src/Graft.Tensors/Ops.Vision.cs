using Graft.Tensors.Kernels;
using System.Numerics.Tensors;

namespace Graft.Tensors;

/// <summary>Image-specific layout ops: patch embedding (a strided convolution) and InternVL's pixel shuffle.</summary>
public static partial class Ops
{
    /// <summary>
    /// Conv2d with kernel = stride = patch and no padding, as a patch embedding: images [B, Cin, H, W],
    /// weight [Cout, Cin, p, p] (F32, F16 or BF16), bias [Cout] or null -> [B, (H/p)·(W/p), Cout], tokens in
    /// row-major patch order (torch's conv output .flatten(2).transpose(1, 2)). Computed as im2col + GEMM.
    /// </summary>
    public static Tensor Patchify(Tensor images, Tensor weight, Tensor? bias, int patch)
    {
        if (patch <= 0) throw new ArgumentOutOfRangeException(nameof(patch), $"patchify: patch size must be positive, got {patch}");
        if (images.Rank != 4) throw new ArgumentException($"patchify: images must be [B, C, H, W], got {images.ShapeString}");
        int batch = images.Shape[0], channels = images.Shape[1], height = images.Shape[2], width = images.Shape[3];
        if (weight.Rank != 4 || weight.Shape[1] != channels || weight.Shape[2] != patch || weight.Shape[3] != patch)
            throw new ArgumentException($"patchify{NameSuffix(weight)}: weight {weight.ShapeString} must be [Cout, {channels}, {patch}, {patch}] for images {images.ShapeString}");
        int outChannels = weight.Shape[0];
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != outChannels))
            throw new ArgumentException($"patchify{NameSuffix(bias)}: bias {bias.ShapeString} must be [{outChannels}]");
        if (height % patch != 0 || width % patch != 0)
            throw new ArgumentException($"patchify: image height {height} and width {width} must both be multiples of the patch size {patch}; resize or crop the images first");

        var grid = new PatchGrid(batch, channels, height, width, patch);
        int rows = batch * grid.Tokens, inner = grid.PatchLength;
        var columns = new float[rows * inner];
        grid.ToColumns(images.Span, columns);
        var weight2d = weight.ViewAs([outChannels, inner]);
        var y = Tensor.Zeros(batch, grid.Tokens, outChannels);
        var ys = y.Span;
        MultiplyByWeight(columns, rows, inner, weight2d, transposeWeight: true, ys);
        if (bias is not null)
        {
            var bv = bias.Span;
            for (int row = 0; row < rows; row++) TensorPrimitives.Add(ys.Slice(row * outChannels, outChannels), bv, ys.Slice(row * outChannels, outChannels));
        }
        return Autograd.Record(y, "patchify", bias is null ? [images, weight] : [images, weight, bias], gy =>
        {
            var g = gy.Span;
            if (weight.RequiresGrad) // dW[Cout, K] += dy[M, Cout]ᵀ · columns[M, K]
                Gemm.Multiply(true, false, outChannels, inner, rows, g, outChannels, columns, inner, weight.GradientBuffer(), inner, beta: 1f);
            if (bias is not null && bias.RequiresGrad) AccumulateRowSums(bias.GradientBuffer(), g, outChannels);
            if (images.RequiresGrad) // dcolumns[M, K] = dy[M, Cout] · W[Cout, K], folded back onto the pixels
            {
                var columnGrad = new float[rows * inner];
                MultiplyByWeight(g, rows, outChannels, weight2d, transposeWeight: false, columnGrad);
                grid.AddColumnsTo(columnGrad, images.GradientBuffer());
            }
        });
    }

    /// <summary>
    /// InternVL's <c>pixel_shuffle(x, scale_factor = 1/factor)</c> with ps_version 'v2': x [B, h, w, C] ->
    /// [B, h/f, w/f, f²·C] where out[b, i, j, (r·f + q)·C + c] = x[b, f·i + r, f·j + q, c]. That is the element
    /// order its view / permute / view / permute sequence produces.
    /// </summary>
    public static Tensor PixelShuffle(Tensor x, int factor)
    {
        if (factor <= 0) throw new ArgumentOutOfRangeException(nameof(factor), $"pixel shuffle: factor must be positive, got {factor}");
        if (x.Rank != 4) throw new ArgumentException($"pixel shuffle: input must be [B, h, w, C], got {x.ShapeString}");
        int batch = x.Shape[0], height = x.Shape[1], width = x.Shape[2], channels = x.Shape[3];
        if (height % factor != 0 || width % factor != 0)
            throw new ArgumentException($"pixel shuffle: grid {height} x {width} of {x.ShapeString} is not divisible by the factor {factor}");
        var y = Tensor.Zeros(batch, height / factor, width / factor, factor * factor * channels);
        ShufflePixels(x.Span, y.Span, batch, height, width, channels, factor, toShuffled: true);
        return Autograd.Record(y, "pixel_shuffle", [x], gy =>
        {
            var back = new float[x.Length];
            ShufflePixels(back, gy.Span, batch, height, width, channels, factor, toShuffled: false);
            AccumulateOwned(x, back);
        });
    }

    /// <summary>Moves C-long pixel vectors between grid [B, h, w, C] and shuffled [B, h/f, w/f, f²C], in either direction.</summary>
    private static void ShufflePixels(Span<float> grid, Span<float> shuffled, int batch, int height, int width, int channels, int factor, bool toShuffled)
    {
        int outHeight = height / factor, outWidth = width / factor;
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < outHeight; i++)
                for (int j = 0; j < outWidth; j++)
                    for (int r = 0; r < factor; r++)
                        for (int q = 0; q < factor; q++)
                        {
                            var pixel = grid.Slice(((b * height + factor * i + r) * width + factor * j + q) * channels, channels);
                            var packed = shuffled.Slice((((b * outHeight + i) * outWidth + j) * factor * factor + r * factor + q) * channels, channels);
                            if (toShuffled) pixel.CopyTo(packed);
                            else packed.CopyTo(pixel);
                        }
    }

    /// <summary>
    /// The im2col layout of non-overlapping patches: images [B, C, H, W] <-> columns [B·T, C·p·p], each row one
    /// patch with elements in the weight's (c, ky, kx) order, patches in row-major order.
    /// </summary>
    private readonly record struct PatchGrid(int Batch, int Channels, int Height, int Width, int Patch)
    {
        public int Tokens => Height / Patch * (Width / Patch);
        public int PatchLength => Channels * Patch * Patch;

        public void ToColumns(ReadOnlySpan<float> images, Span<float> columns)
        {
            for (int b = 0; b < Batch; b++)
                for (int token = 0; token < Tokens; token++)
                    for (int c = 0; c < Channels; c++)
                        for (int ky = 0; ky < Patch; ky++)
                            images.Slice(PixelOffset(b, token, c, ky), Patch).CopyTo(columns.Slice(ColumnOffset(b, token, c, ky), Patch));
        }

        public void AddColumnsTo(ReadOnlySpan<float> columns, Span<float> images)
        {
            for (int b = 0; b < Batch; b++)
                for (int token = 0; token < Tokens; token++)
                    for (int c = 0; c < Channels; c++)
                        for (int ky = 0; ky < Patch; ky++)
                        {
                            var target = images.Slice(PixelOffset(b, token, c, ky), Patch);
                            TensorPrimitives.Add(target, columns.Slice(ColumnOffset(b, token, c, ky), Patch), target);
                        }
        }

        private int PixelOffset(int b, int token, int c, int ky)
        {
            int columnsOfPatches = Width / Patch;
            int top = token / columnsOfPatches * Patch, left = token % columnsOfPatches * Patch;
            return ((b * Channels + c) * Height + top + ky) * Width + left;
        }

        private int ColumnOffset(int b, int token, int c, int ky) => (b * Tokens + token) * PatchLength + (c * Patch + ky) * Patch;
    }
}
