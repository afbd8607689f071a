using Graft.Models.Imaging;

namespace Graft.Serving;

/// <summary>
/// Images as clients send them: a data: URI (base64 PNG or JPEG), a file on the server's disk when local files are
/// allowed, or the bytes themselves. Only the header is read here, and the request's budget (count, bytes, pixels) is
/// checked before any base64 is decoded or any file read; the pixels are decoded later by the engine. Every refusal names
/// the parameter. Remote http(s) URLs are refused: the server fetches nothing from the network.
/// </summary>
internal static class ImageInput
{
    public static ChatImage FromUrl(string url, string param, RequestBudget budget)
    {
        var options = budget.Options;
        budget.CheckImageCount(param);
        if (url.StartsWith("data:", StringComparison.OrdinalIgnoreCase)) return FromDataUri(url, param, budget);
        if (url.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || url.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            throw ChatRequestException.Invalid("remote image URLs are not fetched (the server has no network access); send the image inline as a data:image/png;base64,... or data:image/jpeg;base64,... URI", param, "remote_image_url");
        string? path = url.StartsWith("file://", StringComparison.OrdinalIgnoreCase) && Uri.TryCreate(url, UriKind.Absolute, out var uri) ? uri.LocalPath
            : Path.IsPathFullyQualified(url) ? url : null;
        if (path is null)
            throw ChatRequestException.Invalid("an image URL must be a data: URI (data:image/png;base64,...)" + (options.AllowLocalFiles ? ", a file:// URL or an absolute path" : ""), param);
        if (!options.AllowLocalFiles)
            throw ChatRequestException.Invalid("images from local files are refused; the server must be started with --allow-local-files to read them", param, "local_file_refused");
        var file = new FileInfo(path);
        if (!file.Exists) throw ChatRequestException.Invalid($"there is no file '{ErrorText.Shown(path)}' on the server", param);
        budget.CheckImageBytes(file.Length, param);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw ChatRequestException.Invalid($"the file '{ErrorText.Shown(path)}' cannot be read: {e.Message}", param);
        }
        return Counted(bytes, param, budget);
    }

    /// <summary>PNG or JPEG bytes, counted against the request's budget from their header.</summary>
    public static ChatImage FromBytes(ReadOnlyMemory<byte> bytes, string param, RequestBudget budget)
    {
        budget.CheckImageCount(param);
        budget.CheckImageBytes(bytes.Length, param);
        return Counted(bytes, param, budget);
    }

    /// <summary>data:[media type][;base64],DATA with an image/png or image/jpeg media type and base64 data.</summary>
    private static ChatImage FromDataUri(string url, string param, RequestBudget budget)
    {
        int comma = url.IndexOf(',');
        if (comma < 0) throw ChatRequestException.Invalid("a data: URI needs a comma before its data (data:image/png;base64,...)", param);
        var header = url[5..comma].Split(';');
        var mediaType = header[0].Trim().ToLowerInvariant();
        if (mediaType is not ("image/png" or "image/jpeg" or "image/jpg"))
            throw ChatRequestException.Invalid($"images must be PNG or JPEG (data:image/png or data:image/jpeg), not '{(mediaType.Length == 0 ? "(no media type)" : ErrorText.Shown(mediaType))}'", param, "invalid_image");
        if (!header.Skip(1).Any(p => p.Trim().Equals("base64", StringComparison.OrdinalIgnoreCase)))
            throw ChatRequestException.Invalid("a data: URI image must be base64-encoded (data:image/png;base64,...)", param, "invalid_base64");
        var data = url.AsSpan(comma + 1).Trim();
        // Three bytes per four characters: refuse before decoding what would be too large anyway.
        budget.CheckImageBytes(data.Length / 4 * 3, param);
        var bytes = new byte[data.Length / 4 * 3 + 3];
        if (!Convert.TryFromBase64Chars(data, bytes, out int written))
            throw ChatRequestException.Invalid("the image data is not valid base64", param, "invalid_base64");
        return Counted(bytes.AsMemory(0, written), param, budget);
    }

    private static ChatImage Counted(ReadOnlyMemory<byte> bytes, string param, RequestBudget budget)
    {
        var image = ChatImage.FromEncoded(bytes, budget.Options.ImageLimits, param);
        budget.AddImage(image, param);
        return image;
    }

    /// <summary>The width and height from the header of PNG or JPEG bytes, checked against the per-image limits; nothing is decoded.</summary>
    public static (int Width, int Height) ReadHeader(ReadOnlySpan<byte> bytes, ImageLimits limits, string? param)
    {
        if (bytes.Length > limits.MaxFileBytes)
            throw ChatRequestException.Invalid($"the image is {bytes.Length} bytes, over the limit of {limits.MaxFileBytes}", param, "image_too_large");
        CheckSignature(bytes, param);
        try
        {
            var header = ImageDecoder.ReadHeader(bytes, limits, param);
            return (header.Width, header.Height);
        }
        catch (ImageFormatException e)
        {
            throw Refusal(e, param);
        }
    }

    /// <summary>Decodes PNG or JPEG bytes within the per-image limits.</summary>
    public static RgbImage Decode(ReadOnlySpan<byte> bytes, ImageLimits limits, string? param, CancellationToken cancellationToken)
    {
        CheckSignature(bytes, param);
        try
        {
            return ImageDecoder.Decode(bytes, limits, param, cancellationToken);
        }
        catch (ImageFormatException e)
        {
            throw Refusal(e, param);
        }
    }

    private static void CheckSignature(ReadOnlySpan<byte> bytes, string? param)
    {
        bool png = bytes.Length >= 8 && bytes[..8].SequenceEqual((ReadOnlySpan<byte>)[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        bool jpeg = bytes.Length >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;
        if (!png && !jpeg) throw ChatRequestException.Invalid($"the image data ({bytes.Length} bytes) is not a PNG or JPEG image", param, "invalid_image");
    }

    private static ChatRequestException Refusal(ImageFormatException e, string? param) => e.IsOverLimit
        ? ChatRequestException.Invalid($"the image is too large: {e.Problem}", param, "image_too_large")
        : ChatRequestException.Invalid($"the image cannot be decoded: {e.Message}", param, "invalid_image");
}
