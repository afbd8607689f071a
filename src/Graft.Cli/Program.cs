using System.CommandLine;
using Graft.Cli;

var root = new RootCommand("Graft: give a frozen LLM new senses as plug-ins, without changing a single base weight.");
foreach (var command in Commands.All()) root.Subcommands.Add(command);
// Ctrl-C cancels the command; graft serve then lets running requests finish, so the process is given time to stop.
return await root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = ServeCommand.ProcessShutdownLimit });
