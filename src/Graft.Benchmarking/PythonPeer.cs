using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Graft.Benchmarking;

/// <summary>
/// Runs a benchmark peer, tools/bench/SCRIPT under Debian's /usr/bin/python3: the request goes to its standard input as
/// JSON, and its standard output is read back as JSON.
/// </summary>
internal static class PythonPeer
{
    private const string Python = "/usr/bin/python3";

    /// <summary>The peer's JSON answer, or null with the reason when it cannot run (script or module missing, failure).</summary>
    public static JsonDocument? Run(string scriptName, JsonObject request, string requiredModule, out string? problem,
        IReadOnlyDictionary<string, string>? environment = null)
    // environment: variables to set for the peer; an empty value removes the variable.
    {
        string? script = FindScript(scriptName);
        if (script is null) { problem = $"tools/bench/{scriptName} not found above the current directory or the executable"; return null; }
        if (!File.Exists(Python)) { problem = $"{Python} not found"; return null; }
        var start = new ProcessStartInfo(Python, [script])
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            if (value.Length == 0) start.Environment.Remove(name);
            else start.Environment[name] = value;
        }
        using var process = Process.Start(start);
        if (process is null) { problem = $"could not start {Python}"; return null; }
        process.StandardInput.Write(request.ToJsonString());
        process.StandardInput.Close();
        var errorTask = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        string error = errorTask.Result;
        if (process.ExitCode != 0)
        {
            problem = error.Contains($"No module named '{requiredModule}'") ? $"{requiredModule} is not importable by {Python}"
                : $"peer script failed (exit {process.ExitCode}): {error.Trim().Split('\n').LastOrDefault()}";
            return null;
        }
        problem = null;
        return JsonDocument.Parse(output);
    }

    private static string? FindScript(string name)
    {
        foreach (var origin in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var directory = new DirectoryInfo(origin); directory is not null; directory = directory.Parent)
            {
                string candidate = Path.Combine(directory.FullName, "tools", "bench", name);
                if (File.Exists(candidate)) return candidate;
            }
        return null;
    }
}
