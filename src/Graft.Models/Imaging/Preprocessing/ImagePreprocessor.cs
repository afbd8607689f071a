using Graft.Tensors;

namespace Graft.Models.Imaging;

/// <summary>Turns decoded images into the normalised channel-first float tensors a vision tower takes.</summary>
public static class ImagePreprocessor
{
    /// <summary>
    /// The 8-bit steps in the reference order (pad to square, PIL resize, HF center crop) with the reference's pixels,
    /// computed without the intermediate images: the padding is a virtual border and only the pixels the crop keeps
    /// are resampled, so memory follows the input and the output, whatever the aspect ratio.
    /// </summary>
    public static RgbImage Prepare(RgbImage image, ImageProcessorConfig config)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(config);
        var canvas = config.PadToSquare
            ? ImageResizer.Canvas.Square(image, MeanColour(config))
            : new ImageResizer.Canvas(image, image.Width, image.Height, 0, 0, RgbColor.Black);
        int width = canvas.Width, height = canvas.Height;
        if (config.DoResize)
            (height, width) = config.ResizeTarget(width, height);
        var window = new ImageResizer.Window(0, 0, width, height);
        bool cropInside = config.DoCenterCrop && config.CropWidth <= width && config.CropHeight <= height;
        if (cropInside)
            window = new ImageResizer.Window((width - config.CropWidth) >> 1, (height - config.CropHeight) >> 1, config.CropWidth, config.CropHeight);
        var filter = config.DoResize ? config.Resample : ResampleFilter.Bilinear; // no axis changes size without a resize: no filter runs
        var prepared = ImageResizer.Resample(canvas, width, height, window, filter);
        if (config.DoCenterCrop && !cropInside)
            prepared = ImageGeometry.CenterCrop(prepared, config.CropWidth, config.CropHeight);
        return prepared;
    }

    /// <summary>One image as [3, H, W] float32, rescaled and normalised.</summary>
    public static Tensor ToTensor(RgbImage image, ImageProcessorConfig config)
    {
        var prepared = Prepare(image, config);
        var data = new float[3 * prepared.Height * prepared.Width];
        Normalize(prepared, config, data);
        return Tensor.FromArray(data, 3, prepared.Height, prepared.Width);
    }

    /// <summary>Images that all come out the same size as [B, 3, H, W] float32.</summary>
    public static Tensor ToBatch(IReadOnlyList<RgbImage> images, ImageProcessorConfig config)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0)
            throw new ArgumentException("a batch needs at least one image", nameof(images));
        var prepared = new RgbImage[images.Count];
        for (int i = 0; i < images.Count; i++)
        {
            prepared[i] = Prepare(images[i], config);
            if (prepared[i].Width != prepared[0].Width || prepared[i].Height != prepared[0].Height)
                throw new ArgumentException(
                    $"image {i} preprocesses to {prepared[i].Width}x{prepared[i].Height} but image 0 to {prepared[0].Width}x{prepared[0].Height}; a batch needs one size (use a fixed size or a center crop)",
                    nameof(images));
        }
        int plane = 3 * prepared[0].Height * prepared[0].Width;
        var data = new float[images.Count * plane];
        for (int i = 0; i < prepared.Length; i++)
            Normalize(prepared[i], config, data.AsSpan(i * plane, plane));
        return Tensor.FromArray(data, images.Count, 3, prepared[0].Height, prepared[0].Width);
    }

    /// <summary>
    /// Writes [3, H, W] from HWC bytes. Each channel has only 256 possible inputs, so the exact reference arithmetic
    /// (see <see cref="RescaleArithmetic"/>, then (x - mean) / std in float32) is tabulated once per call.
    /// </summary>
    public static void Normalize(RgbImage image, ImageProcessorConfig config, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(image);
        int pixels = image.Width * image.Height;
        if (destination.Length != 3 * pixels)
            throw new ArgumentException($"destination holds {destination.Length} floats, expected 3 x {image.Height} x {image.Width}", nameof(destination));
        Span<float> table = stackalloc float[3 * 256];
        FillTable(config, table);
        var source = image.Pixels.AsSpan();
        var red = destination[..pixels];
        var green = destination.Slice(pixels, pixels);
        var blue = destination.Slice(2 * pixels, pixels);
        for (int p = 0; p < pixels; p++)
        {
            red[p] = table[source[3 * p]];
            green[p] = table[256 + source[3 * p + 1]];
            blue[p] = table[512 + source[3 * p + 2]];
        }
    }

    /// <summary>LLaVA's background for expand2square: tuple(int(x * 255) for x in image_mean).</summary>
    public static RgbColor MeanColour(ImageProcessorConfig config) =>
        new(ToByte(config.ImageMean[0]), ToByte(config.ImageMean[1]), ToByte(config.ImageMean[2]));

    private static byte ToByte(double mean) => (byte)Math.Clamp((int)(mean * 255), 0, 255);

    private static void FillTable(ImageProcessorConfig config, Span<float> table)
    {
        float divisor = (float)(1.0 / config.RescaleFactor);
        for (int c = 0; c < 3; c++)
        {
            float mean = (float)config.ImageMean[c], std = (float)config.ImageStd[c];
            for (int u = 0; u < 256; u++)
            {
                float value = !config.DoRescale ? u
                    : config.RescaleArithmetic == RescaleArithmetic.NumpyFloat64Multiply ? (float)(u * config.RescaleFactor)
                    : u / divisor;
                table[c * 256 + u] = config.DoNormalize ? (value - mean) / std : value;
            }
        }
    }
}
