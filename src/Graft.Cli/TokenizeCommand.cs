using System.CommandLine;
using Graft.Models.Tokenization;

namespace Graft.Cli;

/// <summary>`graft tokenize --model DIR --text TEXT`: prints the ids (with the tokenizer's special tokens) as a JSON array.</summary>
public static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model folder holding tokenizer.json", Required = true };
        var text = new Option<string>("--text") { Description = "Text to encode", Required = true };
        var command = new Command("tokenize", "Print the token ids of a text as a JSON array");
        command.Options.Add(model);
        command.Options.Add(text);
        command.SetAction(parseResult =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            var error = parseResult.InvocationConfiguration.Error;
            try
            {
                var tokenizer = Tokenizer.FromFolder(parseResult.GetRequiredValue(model));
                var ids = tokenizer.Encode(parseResult.GetRequiredValue(text));
                output.WriteLine("[" + string.Join(",", ids) + "]");
                return 0;
            }
            catch (Exception e) when (e is IOException or FormatException or NotSupportedException or UnauthorizedAccessException)
            {
                error.WriteLine("graft tokenize: " + e.Message);
                return 1;
            }
        });
        return command;
    }
}
