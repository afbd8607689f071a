using System.CommandLine;
using Graft.Cli;

var root = new RootCommand("Graft: give a frozen LLM new senses as plug-ins, without changing a single base weight.");
foreach (var command in Commands.All()) root.Subcommands.Add(command);
var parse = root.Parse(args);
// Ctrl-C cancels the command; graft serve then lets running requests finish, so the process is given time to stop.
// graft chat hears Ctrl-C itself: it stops an answer and returns to the prompt, and two at the prompt quit.
return await parse.InvokeAsync(new InvocationConfiguration
{
    ProcessTerminationTimeout = parse.CommandResult.Command.Name == "chat" ? null : ServeCommand.ProcessShutdownLimit,
});
