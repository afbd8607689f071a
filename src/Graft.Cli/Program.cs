using System.CommandLine;
using Graft.Cli;

var root = new RootCommand("Graft: give a frozen LLM new senses as plug-ins, without changing a single base weight.");
foreach (var command in Commands.All()) root.Subcommands.Add(command);
return await root.Parse(args).InvokeAsync();
