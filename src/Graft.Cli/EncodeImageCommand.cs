using System.CommandLine;
using Graft.Models.Imaging;
using Graft.Models.Vision;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Cli;

/// <summary>
/// `graft encode-image --vision DIR --image FILE --out FILE.safetensors [--layer N]`: decodes an image, preprocesses it
/// as the folder's preprocessor_config.json says, runs the vision tower and writes one F32 tensor `features`
/// [tokens, width]: hidden state N (Hugging Face's hidden_states index, negative from the end; default -1, the last
/// layer's output), class token included when the tower has one.
/// </summary>
public static class EncodeImageCommand
{
    public const string PreprocessorFileName = "preprocessor_config.json";

    public static Command Create()
    {
        var vision = new Option<string>("--vision") { Description = "Hugging Face CLIP or SigLIP folder (config.json, safetensors, preprocessor_config.json).", Required = true };
        var image = new Option<string>("--image") { Description = "Image file (PNG, JPEG, PNM).", Required = true };
        var output = new Option<string>("--out") { Description = "Output .safetensors file with one F32 tensor 'features' [tokens, width].", Required = true };
        var layer = new Option<int>("--layer") { Description = "Hidden-state index: 0 = embeddings, i = layer i's output, negative from the end.", DefaultValueFactory = _ => -1 };
        var command = new Command("encode-image", "Encode one image with a CLIP or SigLIP vision tower and write its features.");
        foreach (var option in new Option[] { vision, image, output, layer }) command.Options.Add(option);
        command.SetAction(parseResult =>
        {
            var config = parseResult.InvocationConfiguration;
            return Guarded(config.Error, () => Run(parseResult.GetValue(vision)!, parseResult.GetValue(image)!, parseResult.GetValue(output)!,
                parseResult.GetValue(layer), config.Output));
        });
        return command;
    }

    public static int Run(string visionFolder, string imagePath, string outputPath, int layer, TextWriter output)
    {
        using var model = VisionEncoder.Load(visionFolder);
        var features = Encode(model, visionFolder, ImageDecoder.Load(imagePath), layer);
        SafeTensorsWriter.Write(outputPath, [new("features", features)]);
        output.WriteLine($"{outputPath}: features {features.ShapeString} from hidden state {layer} of {model.Config.Kind} ({model.Config.Layers} layers)");
        return 0;
    }

    /// <summary>Bad input (folder, image, layer) becomes one line on stderr and exit code 1 instead of a stack trace.</summary>
    private static int Guarded(TextWriter error, Func<int> run)
    {
        try
        {
            return run();
        }
        catch (Exception e) when (e is VisionModelException or SafeTensorsException or ImageFormatException or ImageProcessorConfigException
                                   or IOException or ArgumentException or UnauthorizedAccessException)
        {
            error.WriteLine($"graft encode-image: {e.Message}");
            return 1;
        }
    }

    /// <summary>The features of one decoded image: [tokens, width].</summary>
    public static Tensor Encode(IVisionEncoder model, string visionFolder, RgbImage image, int layer)
    {
        var preprocessor = PreprocessorFor(model.Config, visionFolder);
        var pixels = ImagePreprocessor.ToTensor(image, preprocessor);
        using var _ = Autograd.NoGrad();
        var output = model.Forward(pixels.Reshape(1, pixels.Shape[0], pixels.Shape[1], pixels.Shape[2]));
        var state = VisionFeatureSelector.Layer(layer, keepClassToken: true).Select(output);
        return state.Reshape(state.Shape[1], state.Shape[2]);
    }

    /// <summary>The folder's preprocessor_config.json, or the family's Hugging Face defaults sized to the tower's image_size.</summary>
    public static ImageProcessorConfig PreprocessorFor(VisionTowerConfig config, string folder) => VisionTowerFrontEnd.PreprocessorFor(config, folder);
}
