namespace Graft.Serving;

/// <summary>
/// What one request may cost, counted while it is read, before anything expensive is done for it: the characters of its
/// text (no more than its context could hold, so nothing longer is ever tokenized), and the count, total pixels (from
/// each header) and total encoded bytes of its images (so none is decoded when the request is over budget). Every
/// refusal is a <see cref="ChatRequestException"/> naming the parameter that went over.
/// </summary>
internal sealed class RequestBudget
{
    private readonly ServingOptions _options;
    private long _characters;
    private int _images;
    private long _pixels;
    private long _imageBytes;

    /// <param name="maxTextCharacters">Characters of text, all messages together (see <see cref="ChatEngine.MaxTextCharacters"/>).</param>
    public RequestBudget(ServingOptions options, long maxTextCharacters)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        MaxTextCharacters = maxTextCharacters;
    }

    public long MaxTextCharacters { get; }

    public ServingOptions Options => _options;

    /// <summary>
    /// Refuses text of at least <paramref name="characters"/> characters before it is read (a string's raw JSON form
    /// bounds its length from below), so an oversized message is never materialised.
    /// </summary>
    public void CheckTextAtLeast(long characters, string param)
    {
        if (_characters + characters > MaxTextCharacters) throw TextTooLong(_characters + characters, param, "at least ");
    }

    public void AddText(long characters, string param)
    {
        _characters += characters;
        if (_characters > MaxTextCharacters) throw TextTooLong(_characters, param, "");
    }

    /// <summary>Refuses an image of <paramref name="bytes"/> encoded bytes (or an upper bound of them) before it is decoded from base64 or read.</summary>
    public void CheckImageBytes(long bytes, string param)
    {
        if (bytes > _options.ImageLimits.MaxFileBytes)
            throw ChatRequestException.Invalid($"the image is {bytes} bytes, over the limit of {_options.ImageLimits.MaxFileBytes}", param, "image_too_large");
        if (_imageBytes + bytes > _options.MaxRequestImageBytes)
            throw ChatRequestException.Invalid($"the request's images are {_imageBytes + bytes} bytes together, over this server's limit of {_options.MaxRequestImageBytes} per request", param, "image_too_large");
    }

    /// <summary>Refuses one more image before it is read when the request already carries the most it may.</summary>
    public void CheckImageCount(string param)
    {
        if (_images >= _options.MaxImagesPerRequest)
            throw ChatRequestException.Invalid(_options.MaxImagesPerRequest == 0
                ? "this server takes no images"
                : $"a request may carry at most {_options.MaxImagesPerRequest} images; this one has more", param, "too_many_images");
    }

    /// <summary>Counts an image whose header was read (nothing decoded yet).</summary>
    public void AddImage(ChatImage image, string param)
    {
        ArgumentNullException.ThrowIfNull(image);
        CheckImageCount(param);
        CheckImageBytes(image.EncodedBytes, param);
        if (image.Pixels > _options.ImageLimits.MaxPixels)
            throw ChatRequestException.Invalid($"the image is {image.Width}x{image.Height} = {image.Pixels} pixels, over the limit of {_options.ImageLimits.MaxPixels}", param, "image_too_large");
        if (_pixels + image.Pixels > _options.MaxRequestImagePixels)
            throw ChatRequestException.Invalid($"the request's images are {_pixels + image.Pixels} pixels together, over this server's limit of {_options.MaxRequestImagePixels} per request", param, "image_too_large");
        _images++;
        _pixels += image.Pixels;
        _imageBytes += image.EncodedBytes;
    }

    private ChatRequestException TextTooLong(long characters, string param, string atLeast) =>
        new(400, $"the messages hold {atLeast}{characters} characters, more than this server's context of tokens can hold ({MaxTextCharacters} characters at most)",
            param, "context_length_exceeded");
}
