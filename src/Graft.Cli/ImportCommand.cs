using System.CommandLine;
using Graft.Import;
using Graft.Tensors.PyTorch;

namespace Graft.Cli;

/// <summary>`graft import SRC --out DIR`: a design's published checkpoint as a base, a vision tower and a plug-in.</summary>
public static class ImportCommand
{
    public static Command Create()
    {
        var source = new Argument<string>("SRC") { Description = "The authors' checkpoint folder as downloaded (or one file, such as mm_projector.bin)" };
        var output = new Option<string>("--out") { Description = "The folder to write: base/, vision/, NAME.graft/ and import.json", Required = true };
        var format = new Option<string?>("--format") { Description = "The layout, instead of detecting it: " + string.Join(", ", Importer.Layouts.Select(l => l.Name)) };
        var baseFolder = new Option<string?>("--base") { Description = "The base the authors started from, for releases that hold only their plug-in (LLaVA's mm_projector.bin: the Vicuna folder)" };
        var vision = new Option<string?>("--vision") { Description = "The vision tower the authors' code loads by name (LLaVA: openai/clip-vit-large-patch14-336), as a downloaded folder" };
        var name = new Option<string?>("--name") { Description = "The plug-in's name (NAME.graft); default: the source folder's name" };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an output folder that Graft did not write" };
        var command = new Command("import", "Convert a design's released checkpoint (LLaVA-1.5, ...) into a base, a vision tower and a Graft plug-in; the source is only read");
        command.Arguments.Add(source);
        foreach (var option in new Option[] { output, format, baseFolder, vision, name, overwrite }) command.Options.Add(option);
        command.SetAction(parseResult =>
        {
            var error = parseResult.InvocationConfiguration.Error;
            var stdout = parseResult.InvocationConfiguration.Output;
            try
            {
                return PluginCommand.Guarded(error, () => Run(new ImportRequest
                {
                    Source = parseResult.GetValue(source)!,
                    Output = parseResult.GetValue(output)!,
                    Format = parseResult.GetValue(format),
                    Base = parseResult.GetValue(baseFolder),
                    Vision = parseResult.GetValue(vision),
                    Name = parseResult.GetValue(name),
                    Overwrite = parseResult.GetValue(overwrite),
                }, stdout, error));
            }
            catch (Exception e) when (e is ImportException or PyTorchCheckpointException or Graft.Models.Tokenization.TokenizerFormatException)
            {
                error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    public static int Run(ImportRequest request, TextWriter output, TextWriter progress)
    {
        long bytes = 0;
        var started = System.Diagnostics.Stopwatch.StartNew();
        var result = Importer.Import(request with
        {
            Progress = p =>
            {
                bytes += p.Bytes;
                progress.WriteLine($"[{p.Done}/{p.Total}] {p.Part} {p.Tensor} ({bytes / (1 << 20)} MiB, {started.Elapsed.TotalSeconds:F0} s)");
            },
        });
        output.WriteLine($"imported {result.Layout} into {result.Output}");
        output.WriteLine($"  base:    {result.BaseFolder}{(result.BaseChanged ? " (the authors' fine-tuned LLM)" : " (the authors' frozen base, unchanged)")}");
        if (result.VisionFolder is not null) output.WriteLine($"  vision:  {result.VisionFolder}");
        output.WriteLine($"  plug-in: {result.PluginFolder}");
        foreach (var note in result.Notes) output.WriteLine($"  note: {note}");
        return 0;
    }
}
