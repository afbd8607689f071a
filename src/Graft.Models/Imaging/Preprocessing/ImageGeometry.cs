namespace Graft.Models.Imaging;

/// <summary>Crops and pads on 8-bit RGB, with the offsets the reference pipelines use.</summary>
public static class ImageGeometry
{
    /// <summary>The width x height rectangle whose top-left pixel is (left, top); it must lie inside the image (PIL's crop of an in-bounds box).</summary>
    public static RgbImage Crop(RgbImage image, int left, int top, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (width <= 0 || height <= 0)
            throw new ArgumentException($"crop size must be positive, got {width}x{height}");
        if (left < 0 || top < 0 || (long)left + width > image.Width || (long)top + height > image.Height)
            throw new ArgumentException($"crop box ({left}, {top}, {left + width}, {top + height}) is outside the {image.Width}x{image.Height} image");
        var output = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
            image.Pixels.AsSpan(((top + y) * image.Width + left) * 3, width * 3).CopyTo(output.AsSpan(y * width * 3));
        return new RgbImage(width, height, output);
    }

    /// <summary>
    /// transformers' image_transforms.center_crop: the window starts at (size - crop) // 2 (floor), and where the image is
    /// smaller than the crop it is zero-padded, placed at ceil((crop - size) / 2), so the result is always crop-sized.
    /// </summary>
    public static RgbImage CenterCrop(RgbImage image, int width, int height)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (width <= 0 || height <= 0)
            throw new ArgumentException($"crop size must be positive, got {width}x{height}");
        int left = FloorHalf(image.Width - width), top = FloorHalf(image.Height - height);
        if (left >= 0 && top >= 0 && left + width <= image.Width && top + height <= image.Height)
            return Crop(image, left, top, width, height);
        var output = new byte[width * height * 3];
        int firstX = Math.Max(0, -left), lastX = Math.Min(width, image.Width - left);
        for (int y = 0; y < height; y++)
        {
            int sourceY = y + top;
            if (sourceY < 0 || sourceY >= image.Height) continue;
            image.Pixels.AsSpan((sourceY * image.Width + firstX + left) * 3, (lastX - firstX) * 3)
                .CopyTo(output.AsSpan((y * width + firstX) * 3));
        }
        return new RgbImage(width, height, output);
    }

    /// <summary>
    /// LLaVA-1.5's expand2square: a square canvas of the longer side filled with <paramref name="background"/>,
    /// the image pasted at ((side - width) // 2, (side - height) // 2); a square image is returned unchanged.
    /// </summary>
    public static RgbImage ExpandToSquare(RgbImage image, RgbColor background)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (image.Width == image.Height)
            return image;
        int side = Math.Max(image.Width, image.Height);
        if ((long)side * side * 3 > Array.MaxLength)
            throw new ArgumentException($"the {image.Width}x{image.Height} image padded to {side}x{side} is too large for one pixel buffer; resize it padded (ImageResizer.ResizePadded) instead");
        var output = new byte[side * side * 3];
        for (int i = 0; i < output.Length; i += 3)
        {
            output[i] = background.R;
            output[i + 1] = background.G;
            output[i + 2] = background.B;
        }
        int left = (side - image.Width) / 2, top = (side - image.Height) / 2;
        for (int y = 0; y < image.Height; y++)
            image.Pixels.AsSpan(y * image.Width * 3, image.Width * 3).CopyTo(output.AsSpan(((top + y) * side + left) * 3));
        return new RgbImage(side, side, output);
    }

    /// <summary>Python's n // 2, which floors for negative n.</summary>
    private static int FloorHalf(int n) => n >> 1;
}
