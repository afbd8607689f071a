using System.Text.Json;

namespace Graft.Models.Imaging;

/// <summary>How 8-bit values become floats before normalisation; the two references round differently in the last bit.</summary>
public enum RescaleArithmetic
{
    /// <summary>transformers' rescale: float64(u) · factor, then cast to float32.</summary>
    NumpyFloat64Multiply,

    /// <summary>torchvision's ToTensor: float32(u) / float32(1 / factor), i.e. u / 255 in float32.</summary>
    TorchFloat32Divide,
}

/// <summary>
/// The image-processing steps of a vision tower, as a Hugging Face <c>preprocessor_config.json</c> states them
/// (CLIPImageProcessor, SiglipImageProcessor) or as InternVL's code hard-wires them. Defaults are the HF class defaults.
/// The order is: pad to square (optional), resize (PIL, on 8-bit), center crop, rescale, normalise.
/// </summary>
public sealed record ImageProcessorConfig
{
    public const string ClipType = "CLIPImageProcessor";
    public const string SiglipType = "SiglipImageProcessor";
    public const string InternVLType = "InternVL";

    public static readonly IReadOnlyList<double> OpenAIClipMean = [0.48145466, 0.4578275, 0.40821073];
    public static readonly IReadOnlyList<double> OpenAIClipStd = [0.26862954, 0.26130258, 0.27577711];
    public static readonly IReadOnlyList<double> ImageNetMean = [0.485, 0.456, 0.406];
    public static readonly IReadOnlyList<double> ImageNetStd = [0.229, 0.224, 0.225];
    public static readonly IReadOnlyList<double> HalfMean = [0.5, 0.5, 0.5];
    public static readonly IReadOnlyList<double> HalfStd = [0.5, 0.5, 0.5];

    public string ProcessorType { get; init; } = ClipType;
    public bool DoResize { get; init; } = true;

    /// <summary>Resize so the shorter side is this, keeping the aspect (long side truncated as HF does); null when a fixed size is set.</summary>
    public int? ShortestEdge { get; init; } = 224;

    /// <summary>Fixed resize target, used when <see cref="ShortestEdge"/> is null.</summary>
    public int ResizeHeight { get; init; }
    public int ResizeWidth { get; init; }

    public ResampleFilter Resample { get; init; } = ResampleFilter.Bicubic;
    public bool DoCenterCrop { get; init; } = true;
    public int CropHeight { get; init; } = 224;
    public int CropWidth { get; init; } = 224;
    public bool DoRescale { get; init; } = true;
    public double RescaleFactor { get; init; } = 1 / 255.0;
    public RescaleArithmetic RescaleArithmetic { get; init; } = RescaleArithmetic.NumpyFloat64Multiply;
    public bool DoNormalize { get; init; } = true;
    public IReadOnlyList<double> ImageMean { get; init; } = OpenAIClipMean;
    public IReadOnlyList<double> ImageStd { get; init; } = OpenAIClipStd;

    /// <summary>Parsed for completeness; decoded images are already RGB, so it changes nothing.</summary>
    public bool DoConvertRgb { get; init; } = true;

    /// <summary>LLaVA-1.5's expand2square before everything else, with background int(mean · 255) per channel. Not part of the HF file.</summary>
    public bool PadToSquare { get; init; }

    public static ImageProcessorConfig Clip() => new();

    public static ImageProcessorConfig Siglip() => new()
    {
        ProcessorType = SiglipType,
        ShortestEdge = null,
        ResizeHeight = 224,
        ResizeWidth = 224,
        DoCenterCrop = false,
        ImageMean = HalfMean,
        ImageStd = HalfStd,
    };

    /// <summary>InternVL's build_transform: Resize((s, s), BICUBIC), ToTensor, Normalize(ImageNet mean/std); most InternVL repos ship no preprocessor_config.json.</summary>
    public static ImageProcessorConfig InternVL(int imageSize = 448)
    {
        if (imageSize <= 0)
            throw new ArgumentException($"image size must be positive, got {imageSize}", nameof(imageSize));
        return new()
        {
            ProcessorType = InternVLType,
            ShortestEdge = null,
            ResizeHeight = imageSize,
            ResizeWidth = imageSize,
            DoCenterCrop = false,
            RescaleArithmetic = RescaleArithmetic.TorchFloat32Divide,
            ImageMean = ImageNetMean,
            ImageStd = ImageNetStd,
        };
    }

    /// <summary>The (height, width) the processor outputs for an input of the given size.</summary>
    public (int Height, int Width) OutputSize(int width, int height)
    {
        if (PadToSquare) width = height = Math.Max(width, height);
        if (DoResize) (height, width) = ResizeTarget(width, height);
        if (DoCenterCrop) (height, width) = (CropHeight, CropWidth);
        return (height, width);
    }

    /// <summary>transformers' get_resize_output_image_size: (height, width) after the resize step.</summary>
    public (int Height, int Width) ResizeTarget(int width, int height)
    {
        if (ShortestEdge is not int shortest)
            return (ResizeHeight, ResizeWidth);
        int shortSide = Math.Min(width, height), longSide = Math.Max(width, height);
        int newLong = (int)((double)((long)shortest * longSide) / shortSide);
        return width <= height ? (newLong, shortest) : (shortest, newLong);
    }

    /// <summary>
    /// The keys of this configuration's preprocessor_config.json, sorted, as transformers writes a CLIPImageProcessor or
    /// SiglipImageProcessor; <see cref="Parse"/> reads them back to an equal configuration. InternVL's hard-wired
    /// steps and LLaVA's pad-to-square have no keys there and are refused.
    /// </summary>
    public SortedDictionary<string, object?> HuggingFaceKeys()
    {
        if (ProcessorType is not (ClipType or SiglipType))
            throw new InvalidOperationException($"{ProcessorType} preprocessing has no preprocessor_config.json form (CLIPImageProcessor and SiglipImageProcessor do)");
        if (PadToSquare) throw new InvalidOperationException("pad-to-square is LLaVA's own step and has no preprocessor_config.json key");
        if (RescaleArithmetic != RescaleArithmetic.NumpyFloat64Multiply)
            throw new InvalidOperationException("torchvision's float32 rescale has no preprocessor_config.json key");
        var keys = new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["do_convert_rgb"] = DoConvertRgb,
            ["do_normalize"] = DoNormalize,
            ["do_rescale"] = DoRescale,
            ["do_resize"] = DoResize,
            ["image_mean"] = ImageMean,
            ["image_processor_type"] = ProcessorType,
            ["image_std"] = ImageStd,
            ["resample"] = (int)Resample,
            ["rescale_factor"] = RescaleFactor,
            ["size"] = ShortestEdge is int shortest
                ? new Dictionary<string, object?> { ["shortest_edge"] = shortest }
                : new Dictionary<string, object?> { ["height"] = ResizeHeight, ["width"] = ResizeWidth },
        };
        if (ProcessorType == ClipType)
        {
            keys["do_center_crop"] = DoCenterCrop;
            keys["crop_size"] = new Dictionary<string, object?> { ["height"] = CropHeight, ["width"] = CropWidth };
        }
        else if (ShortestEdge is not null) throw new InvalidOperationException("SiglipImageProcessor resizes to a fixed height and width, not a shortest edge");
        else if (DoCenterCrop) throw new InvalidOperationException("SiglipImageProcessor does not center-crop");
        return keys;
    }

    public static ImageProcessorConfig Load(string path) =>
        Parse(File.ReadAllText(path), Path.GetFileName(path));

    /// <summary>Reads a preprocessor_config.json; <paramref name="file"/> names it in errors.</summary>
    public static ImageProcessorConfig Parse(string json, string file = "preprocessor_config.json")
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ImageProcessorConfigException(file, "(document)", $"not valid JSON: {e.Message}", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ImageProcessorConfigException(file, "(document)", $"expected a JSON object, got {root.ValueKind}");
            return new Reader(root, file).Read();
        }
    }

    private readonly struct Reader(JsonElement root, string file)
    {
        public ImageProcessorConfig Read()
        {
            string typeField = Present("image_processor_type") ? "image_processor_type" : "feature_extractor_type";
            string type = Present(typeField)
                ? String(typeField)
                : throw Error("image_processor_type", "missing; cannot tell which image processor this is");
            var config = type switch
            {
                "CLIPImageProcessor" or "CLIPFeatureExtractor" => Clip(),
                "SiglipImageProcessor" => Siglip(),
                _ => throw Error(typeField, $"unsupported image processor '{type}' (supported: CLIPImageProcessor, SiglipImageProcessor)"),
            };
            bool isClip = config.ProcessorType == ClipType;
            config = config with
            {
                DoResize = Bool("do_resize", config.DoResize),
                Resample = Filter("resample", config.Resample),
                DoRescale = Bool("do_rescale", config.DoRescale),
                RescaleFactor = PositiveNumber("rescale_factor", config.RescaleFactor),
                DoNormalize = Bool("do_normalize", config.DoNormalize),
                ImageMean = Triple("image_mean", config.ImageMean, positive: false),
                ImageStd = Triple("image_std", config.ImageStd, positive: true),
                DoConvertRgb = Bool("do_convert_rgb", config.DoConvertRgb),
            };
            if (Present("size"))
                config = Size(config, squareFromInt: !isClip);
            if (isClip && Present("do_center_crop"))
                config = config with { DoCenterCrop = Bool("do_center_crop", true) };
            if (isClip && Present("crop_size"))
            {
                var (h, w) = HeightWidth("crop_size", root.GetProperty("crop_size"));
                config = config with { CropHeight = h, CropWidth = w };
            }
            return config;
        }

        private bool Present(string name) => root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;

        private ImageProcessorConfigException Error(string field, string problem) => new(file, field, problem);

        private string String(string name)
        {
            var v = root.GetProperty(name);
            return v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Error(name, $"expected a string, got {v.ValueKind}");
        }

        private bool Bool(string name, bool fallback)
        {
            if (!Present(name)) return fallback;
            var v = root.GetProperty(name);
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Error(name, $"expected true or false, got {v.GetRawText()}"),
            };
        }

        private double PositiveNumber(string name, double fallback)
        {
            if (!Present(name)) return fallback;
            var v = root.GetProperty(name);
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !(d > 0) || double.IsInfinity(d))
                throw Error(name, $"expected a positive number, got {v.GetRawText()}");
            return d;
        }

        private ResampleFilter Filter(string name, ResampleFilter fallback)
        {
            if (!Present(name)) return fallback;
            var v = root.GetProperty(name);
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int code) || !Enum.IsDefined((ResampleFilter)code))
                throw Error(name, $"expected a PIL resampling code 0-5 (0 nearest, 2 bilinear, 3 bicubic, 1 lanczos), got {v.GetRawText()}");
            return (ResampleFilter)code;
        }

        private IReadOnlyList<double> Triple(string name, IReadOnlyList<double> fallback, bool positive)
        {
            if (!Present(name)) return fallback;
            var v = root.GetProperty(name);
            string want = positive ? "positive numbers" : "numbers";
            if (v.ValueKind == JsonValueKind.Number)
            {
                double single = Component(name, v, positive, want);
                return [single, single, single];
            }
            if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() != 3)
                throw Error(name, $"expected a number or 3 {want} (one per RGB channel), got {v.GetRawText()}");
            var values = new double[3];
            int i = 0;
            foreach (var item in v.EnumerateArray())
                values[i++] = Component($"{name}[{i - 1}]", item, positive, want);
            return values;
        }

        private double Component(string name, JsonElement v, bool positive, string want)
        {
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d) || (positive && !(d > 0)))
                throw Error(name, $"expected {want}, got {v.GetRawText()}");
            return d;
        }

        /// <summary>HF's get_size_dict: an int is the shortest edge for CLIP, a square for SigLIP; a dict holds shortest_edge or height and width.</summary>
        private ImageProcessorConfig Size(ImageProcessorConfig config, bool squareFromInt)
        {
            var v = root.GetProperty("size");
            if (v.ValueKind == JsonValueKind.Number)
            {
                int n = PositiveInt("size", v);
                return squareFromInt
                    ? config with { ShortestEdge = null, ResizeHeight = n, ResizeWidth = n }
                    : config with { ShortestEdge = n };
            }
            if (v.ValueKind == JsonValueKind.Object && v.TryGetProperty("shortest_edge", out var shortest))
            {
                if (squareFromInt)
                    throw Error("size.shortest_edge", $"{config.ProcessorType} resizes to a fixed height and width; shortest_edge is not supported");
                return config with { ShortestEdge = PositiveInt("size.shortest_edge", shortest) };
            }
            var (h, w) = HeightWidth("size", v);
            return config with { ShortestEdge = null, ResizeHeight = h, ResizeWidth = w };
        }

        private (int Height, int Width) HeightWidth(string name, JsonElement v)
        {
            if (v.ValueKind == JsonValueKind.Number)
            {
                int n = PositiveInt(name, v);
                return (n, n);
            }
            if (v.ValueKind != JsonValueKind.Object)
                throw Error(name, $"expected an integer or an object with height and width, got {v.GetRawText()}");
            if (!v.TryGetProperty("height", out var h) || !v.TryGetProperty("width", out var w))
                throw Error(name, $"expected {{\"height\": H, \"width\": W}}{(name == "size" ? " or {\"shortest_edge\": N}" : "")}, got {v.GetRawText()}");
            return (PositiveInt(name + ".height", h), PositiveInt(name + ".width", w));
        }

        private int PositiveInt(string name, JsonElement v)
        {
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int n) || n <= 0)
                throw Error(name, $"expected a positive integer, got {v.GetRawText()}");
            return n;
        }
    }
}

/// <summary>A preprocessor_config.json that is malformed, has an invalid field, or names a processor Graft does not implement.</summary>
public sealed class ImageProcessorConfigException(string file, string field, string problem, Exception? inner = null)
    : FormatException($"{file}: {field}: {problem}", inner)
{
    public string File { get; } = file;
    public string Field { get; } = field;
}
