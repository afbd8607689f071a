using System.CommandLine;
using Graft.Data;

namespace Graft.Cli;

/// <summary>`graft data make shapes|text --out DIR [--count N] [--seed S] [--force]`: generated data sets, the same for the same seed.</summary>
internal static class DataCommand
{
    public static Command Create()
    {
        var make = new Command("make", "Generate a data set deterministically from a seed (no downloads).");
        make.Subcommands.Add(Generator("shapes", "Shapes on a grey background: PNG images, LLaVA JSON/JSONL and a ScienceQA folder.", 200,
            ShapesWorld.OutputNames, out var shapes));
        var size = new Option<int>("--size") { Description = "Image width and height in pixels.", DefaultValueFactory = _ => 64 };
        var maxShapes = new Option<int>("--max-shapes") { Description = "Most shapes per image (1 to 9).", DefaultValueFactory = _ => 3 };
        shapes.Command.Options.Add(size);
        shapes.Command.Options.Add(maxShapes);
        shapes.Bind((parse, output, count, seed) =>
            ShapesWorld.Write(output, count, seed, new ShapesWorldOptions { Size = parse.GetValue(size), MaxShapes = parse.GetValue(maxShapes) }));

        make.Subcommands.Add(Generator("text", "Fictional cities and arithmetic: a corpus, Alpaca JSON and MMLU-layout CSVs.", 200,
            TextWorld.OutputNames, out var text));
        text.Bind((_, output, count, seed) => TextWorld.Write(output, count, seed));

        var data = new Command("data", "Data sets for training and evaluation.");
        data.Subcommands.Add(make);
        return data;
    }

    private sealed record GeneratorCommand(Command Command, Option<string> Out, Option<int> Count, Option<ulong> Seed, Option<bool> Force, IReadOnlyList<string> Owned)
    {
        public void Bind(Action<ParseResult, DataOutput, int, ulong> write) => Command.SetAction(parse =>
        {
            int count = parse.GetValue(Count);
            if (count <= 0)
            {
                Console.Error.WriteLine($"--count must be positive, got {count}");
                return 2;
            }
            try
            {
                var output = new DataOutput(parse.GetValue(Out)!, parse.GetValue(Force), Owned);
                write(parse, output, count, parse.GetValue(Seed));
                Console.Write(output.Summary());
                return 0;
            }
            catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"graft data make {Command.Name}: {e.Message}");
                return 1;
            }
        });
    }

    private static Command Generator(string name, string description, int defaultCount, IReadOnlyList<string> owned, out GeneratorCommand generator)
    {
        var command = new Command(name, description);
        var output = new Option<string>("--out") { Description = "Folder to write into (created if missing).", Required = true };
        var count = new Option<int>("--count") { Description = "How many scenes (shapes) or cities and arithmetic facts (text).", DefaultValueFactory = _ => defaultCount };
        var seed = new Option<ulong>("--seed") { Description = "Seed; the same seed gives byte-identical files.", DefaultValueFactory = _ => 1 };
        var force = new Option<bool>("--force") { Description = "Write into a non-empty folder, replacing this generator's earlier output." };
        foreach (var option in (Option[])[output, count, seed, force]) command.Options.Add(option);
        generator = new GeneratorCommand(command, output, count, seed, force, owned);
        return command;
    }
}
