using Graft.Models.Imaging;
using Graft.Tensors;

namespace Graft.Models.Vision;

/// <summary>How <see cref="ClipCheckpointWriter.Save"/> writes a tower.</summary>
public sealed record VisionCheckpointOptions
{
    /// <summary>F32 keeps every bit; BF16 or F16 halve the size.</summary>
    public DType StoredAs { get; init; } = DType.F32;

    /// <summary>Replace the target folder even when Graft did not write it.</summary>
    public bool Overwrite { get; init; }

    /// <summary>config.json's initializer_range and initializer_factor (what <see cref="ClipVisionModel.CreateRandom"/> drew with).</summary>
    public float InitializerRange { get; init; } = 0.02f;
    public float InitializerFactor { get; init; } = 1f;
}

/// <summary>
/// Saves a CLIP vision tower as a Hugging Face CLIPVisionModel folder that <see cref="VisionEncoder.Load"/> and
/// transformers both read: config.json (model_type clip_vision_model), model.safetensors under the checkpoint's
/// names, and preprocessor_config.json. Written whole or not at all (<see cref="CheckpointFolder"/>).
/// </summary>
public static class ClipCheckpointWriter
{
    public const string WeightsFileName = "model.safetensors";

    public static void Save(string folder, ClipVisionModel model, ImageProcessorConfig preprocessor, VisionCheckpointOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(preprocessor);
        options ??= new VisionCheckpointOptions();
        var c = model.Config;
        var (height, width) = preprocessor.OutputSize(c.ImageSize, c.ImageSize);
        if (height != c.ImageSize || width != c.ImageSize)
            throw new ArgumentException($"the preprocessing makes {width}x{height} images, but the tower takes {c.ImageSize}x{c.ImageSize}", nameof(preprocessor));
        var preprocessorKeys = preprocessor.HuggingFaceKeys();
        var tensors = CheckpointFolder.StoredAs(model.HuggingFaceTensors(), options.StoredAs);
        var config = new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["architectures"] = new[] { "CLIPVisionModel" },
            ["attention_dropout"] = 0.0,
            ["dropout"] = 0.0,
            ["hidden_act"] = c.Activation switch { VisionActivation.QuickGelu => "quick_gelu", VisionActivation.Gelu => "gelu", _ => "gelu_pytorch_tanh" },
            ["hidden_size"] = c.Width,
            ["image_size"] = c.ImageSize,
            ["initializer_factor"] = options.InitializerFactor,
            ["initializer_range"] = options.InitializerRange,
            ["intermediate_size"] = c.IntermediateSize,
            ["layer_norm_eps"] = c.LayerNormEps,
            ["model_type"] = "clip_vision_model",
            ["num_attention_heads"] = c.Heads,
            ["num_channels"] = c.Channels,
            ["num_hidden_layers"] = c.Layers,
            ["patch_size"] = c.PatchSize,
            ["torch_dtype"] = CheckpointFolder.TorchDTypeName(options.StoredAs),
        };

        using var output = CheckpointFolder.Begin(folder, "clip_vision", options.Overwrite);
        output.WriteJson(VisionTowerConfig.FileName, w => ConfigJson.WriteObject(w, config));
        output.WriteJson("preprocessor_config.json", w => ConfigJson.WriteObject(w, preprocessorKeys));
        output.WriteSafeTensors(WeightsFileName, tensors, new Dictionary<string, string> { ["format"] = "pt" });
        output.Commit();
    }
}
