using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Graft.Benchmarking;

/// <summary>
/// Runs a peer of bench/Graft.Peers (graft-peers: libtorch through TorchSharp, llama.cpp through LLamaSharp) in its own
/// process: the request goes to its standard input as JSON, its standard output is read back as JSON. Its own process
/// keeps the peer's native libraries out of Graft and its weights from being resident beside ours.
/// </summary>
internal static class PeerProcess
{
    const string ExecutableName = "graft-peers";

    public const string BuildHint = "build it with: dotnet build bench/Graft.Peers -c Release";

    /// <summary>The peer's JSON answer, or null with the reason when it cannot run.</summary>
    public static JsonDocument? Run(string peer, JsonObject request, out string? problem)
    {
        string? executable = Find();
        if (executable is null) { problem = $"{ExecutableName} not found ({BuildHint}, or set GRAFT_PEERS to its path)"; return null; }
        var start = new ProcessStartInfo(executable, [peer])
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        using var process = Process.Start(start);
        if (process is null) { problem = $"could not start {executable}"; return null; }
        process.StandardInput.Write(request.ToJsonString());
        process.StandardInput.Close();
        var errorTask = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        string error = errorTask.Result;
        if (process.ExitCode != 0 || output.Length == 0)
        {
            var lines = error.Trim().Split('\n');
            problem = $"{peer} failed (exit {process.ExitCode}): {string.Join(" | ", lines.Where(l => l.Contains("Exception") || l.Contains("error", StringComparison.OrdinalIgnoreCase)).Take(3).DefaultIfEmpty(lines.LastOrDefault() ?? ""))}";
            return null;
        }
        problem = null;
        return JsonDocument.Parse(output);
    }

    static string? Find()
    {
        if (Environment.GetEnvironmentVariable("GRAFT_PEERS") is { Length: > 0 } given) return File.Exists(given) ? given : null;
        foreach (var origin in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var directory = new DirectoryInfo(origin); directory is not null; directory = directory.Parent)
                foreach (string configuration in new[] { "Release", "Debug" })
                {
                    string candidate = Path.Combine(directory.FullName, "bench", "Graft.Peers", "bin", configuration, "net10.0", ExecutableName);
                    if (File.Exists(candidate)) return candidate;
                }
        return null;
    }

    public static float[] Floats(JsonElement base64)
    {
        var bytes = Convert.FromBase64String(base64.GetString()!);
        var values = new float[bytes.Length / sizeof(float)];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        return values;
    }

    public static double[] Doubles(JsonElement array) => array.EnumerateArray().Select(e => e.GetDouble()).ToArray();
}
