using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Graft.Peers;

// graft-peers PEER: reads one JSON request on standard input, runs the named peer, writes one JSON answer on standard
// output. `graft bench` starts it (src/Graft.Benchmarking/PeerProcess.cs); see that file for the peers and requests.
if (args.Length != 1 || !Peers.All.TryGetValue(args[0], out var peer))
{
    Console.Error.WriteLine($"usage: graft-peers PEER < request.json   (PEER: {string.Join(", ", Peers.All.Keys)})");
    return 2;
}
if (Peers.NeedsPreload(out string? preload))
    return Peers.ReExecWithPreload(preload!, args);
var request = JsonNode.Parse(Console.In.ReadToEnd())!.AsObject();
var answer = peer(request);
Console.Out.Write(answer.ToJsonString());
return 0;

namespace Graft.Peers
{
    static class Peers
    {
        public static readonly Dictionary<string, Func<JsonObject, JsonObject>> All = new()
        {
            ["torch-decode"] = TorchDecoder.Decode,
            ["torch-train"] = TorchDecoder.Train,
            ["llama-decode"] = LlamaCppDecoder.Decode,
            ["torch-vision"] = TorchClip.Run,
        };

        const string PreloadName = "libgraft_ios_base_library_init.so";

        /// <summary>
        /// Where the build made the small library defining GCC 13's std::ios_base_library_init (Debian 12's libstdc++
        /// lacks it; see the csproj), the process must start with it preloaded before libtorch's glue is loaded.
        /// </summary>
        public static bool NeedsPreload(out string? library)
        {
            library = Path.Combine(AppContext.BaseDirectory, PreloadName);
            if (!File.Exists(library)) return false;
            string current = Environment.GetEnvironmentVariable("LD_PRELOAD") ?? "";
            return !current.Contains(PreloadName, StringComparison.Ordinal);
        }

        public static int ReExecWithPreload(string library, string[] args)
        {
            var start = new ProcessStartInfo(Environment.ProcessPath!, args) { UseShellExecute = false };
            string current = Environment.GetEnvironmentVariable("LD_PRELOAD") ?? "";
            start.Environment["LD_PRELOAD"] = current.Length == 0 ? library : library + ":" + current;
            using var child = Process.Start(start)!;
            child.WaitForExit();
            return child.ExitCode;
        }

        public static string Base64(ReadOnlySpan<float> values) => Convert.ToBase64String(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values));

        public static double Median(List<double> values)
        {
            var sorted = values.Order().ToList();
            return sorted[sorted.Count / 2];
        }
    }
}
