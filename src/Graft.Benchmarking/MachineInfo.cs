using System.Globalization;
using System.Runtime.Intrinsics.X86;
using System.Text.Json.Nodes;

namespace Graft.Benchmarking;

/// <summary>
/// What a benchmark figure depends on besides our code: the CPU and the features that pick our kernels and the peers',
/// the threads, and how busy the machine was (load average), printed beside every `graft bench` table.
/// </summary>
internal static class MachineInfo
{
    /// <summary>The /proc/cpuinfo flags that decide which kernels run (ours and the peers').</summary>
    static readonly string[] KernelFlags =
        ["avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8"];

    public static string CpuModel()
    {
        foreach (string line in ReadLines("/proc/cpuinfo"))
            if (line.StartsWith("model name", StringComparison.Ordinal)) return line[(line.IndexOf(':') + 1)..].Trim();
        return "unknown CPU";
    }

    /// <summary>Which of <see cref="KernelFlags"/> the CPU has (from /proc/cpuinfo; from .NET's view where that is absent).</summary>
    public static string[] CpuFlags()
    {
        foreach (string line in ReadLines("/proc/cpuinfo"))
            if (line.StartsWith("flags", StringComparison.Ordinal))
            {
                var present = line[(line.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
                return KernelFlags.Where(present.Contains).ToArray();
            }
        var seen = new List<string>();
        if (Avx2.IsSupported) seen.Add("avx2");
        if (Fma.IsSupported) seen.Add("fma");
        if (Avx512F.IsSupported) seen.Add("avx512f");
        if (Avx512BW.IsSupported) seen.Add("avx512bw");
        if (Avx512DQ.IsSupported) seen.Add("avx512dq");
        if (AvxVnni.IsSupported) seen.Add("avx_vnni");
        return seen.ToArray();
    }

    public static bool HasFlag(string flag) => CpuFlags().Contains(flag);

    /// <summary>The 1, 5 and 15 minute load averages, or null where /proc/loadavg is absent.</summary>
    public static double[]? LoadAverage()
    {
        var line = ReadLines("/proc/loadavg").FirstOrDefault();
        if (line is null) return null;
        return line.Split(' ').Take(3).Select(s => double.Parse(s, CultureInfo.InvariantCulture)).ToArray();
    }

    public static string LoadText() => LoadAverage() is { } load ? string.Join(" ", load.Select(l => l.ToString("F2", CultureInfo.InvariantCulture))) : "unknown";

    public static JsonObject Describe() => new()
    {
        ["kind"] = "machine",
        ["cpu"] = CpuModel(),
        ["flags"] = new JsonArray(CpuFlags().Select(f => (JsonNode)f).ToArray()),
        ["threads"] = Environment.ProcessorCount,
        ["load_average"] = LoadText(),
        ["dotnet"] = Environment.Version.ToString(),
    };

    /// <summary>One line for a table's heading.</summary>
    public static string Line() =>
        $"Machine: {CpuModel()}; flags: {string.Join(" ", CpuFlags())}; {Environment.ProcessorCount} threads; load average {LoadText()}";

    static IEnumerable<string> ReadLines(string path)
    {
        try { return File.ReadLines(path).ToList(); }
        catch (IOException) { return []; }
        catch (UnauthorizedAccessException) { return []; }
    }
}
