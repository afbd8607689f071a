using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Graft.Models.Imaging;

namespace Graft.Benchmarking;

/// <summary>
/// `graft bench jpeg [FILES or FOLDERS]`: JPEG decode time per file, Graft's ImageDecoder.Decode beside PIL's
/// Image.open().load() (libjpeg-turbo with its SIMD paths; tools/bench/jpeg_decode_peer.py), both single-threaded, in
/// interleaved rounds, with the ratio PIL time / Graft time (above 1: Graft is faster), its median and worst over the
/// files, and the load average. Default corpus: the JPEG wallpapers Debian's gnome-backgrounds and mate-backgrounds install.
/// </summary>
internal static class JpegBench
{
    private static readonly string[] DefaultFolders = ["/usr/share/backgrounds", "/usr/share/wallpapers"];

    public static Command Create()
    {
        var paths = new Argument<string[]>("paths") { Description = "JPEG files or folders (searched recursively).", Arity = ArgumentArity.ZeroOrMore };
        var repeats = new Option<int>("--repeats") { Description = "Timed decodes per file per round.", DefaultValueFactory = _ => 3 };
        var rounds = new Option<int>("--rounds") { Description = "Interleaved rounds (Graft, then PIL).", DefaultValueFactory = _ => 2 };
        var minPixels = new Option<long>("--min-pixels") { Description = "Skip files smaller than this (large photos are the point).", DefaultValueFactory = _ => 1_000_000 };
        var command = new Command("jpeg", "JPEG decode time vs PIL (libjpeg-turbo) on real photos, with the ratio per file, median and worst.");
        command.Arguments.Add(paths);
        foreach (var option in new Option[] { repeats, rounds, minPixels }) command.Options.Add(option);
        command.SetAction(parse => Run(parse.GetValue(paths) ?? [], parse.GetValue(repeats), parse.GetValue(rounds), parse.GetValue(minPixels)));
        return command;
    }

    private static int Run(string[] paths, int repeats, int rounds, long minPixels)
    {
        var files = (paths.Length > 0 ? paths : DefaultFolders.Where(Directory.Exists).ToArray())
            .SelectMany(p => Directory.Exists(p) ? Directory.EnumerateFiles(p, "*", SearchOption.AllDirectories) : [p])
            .Where(f => Path.GetExtension(f).ToLowerInvariant() is ".jpg" or ".jpeg")
            .Order(StringComparer.Ordinal)
            .Select(f => (Path: f, Data: File.ReadAllBytes(f)))
            .Select(f => (f.Path, f.Data, Header: ImageDecoder.ReadHeader(f.Data)))
            .Where(f => f.Header.Pixels >= minPixels)
            .ToList();
        if (files.Count == 0)
        {
            Console.Error.WriteLine("no JPEG files of at least --min-pixels; pass files or folders, or apt-get install gnome-backgrounds mate-backgrounds");
            return 2;
        }
        var ours = files.Select(_ => new List<double>()).ToArray();
        var pil = files.Select(_ => new List<double>()).ToArray();
        string peerName = "PIL";
        var limits = new ImageLimits { MaxPixels = long.MaxValue / 8, MaxFileBytes = long.MaxValue };
        for (int round = 0; round < rounds; round++)
        {
            for (int i = 0; i < files.Count; i++)
            {
                ImageDecoder.Decode(files[i].Data, limits); // warm-up
                for (int r = 0; r < repeats; r++)
                {
                    var sw = Stopwatch.StartNew();
                    ImageDecoder.Decode(files[i].Data, limits);
                    ours[i].Add(sw.Elapsed.TotalSeconds);
                }
            }
            var request = new JsonObject { ["files"] = new JsonArray(files.Select(f => (JsonNode)f.Path).ToArray()), ["repeats"] = repeats };
            using var peer = PythonPeer.Run("jpeg_decode_peer.py", request, "PIL", out var problem);
            if (peer is null)
            {
                Console.Error.WriteLine($"PIL peer: {problem}");
                return 1;
            }
            peerName = $"PIL {peer.RootElement.GetProperty("pil").GetString()}, libjpeg-turbo {peer.RootElement.GetProperty("libjpeg_turbo").GetString()}";
            int k = 0;
            foreach (var times in peer.RootElement.GetProperty("seconds").EnumerateArray())
                pil[k++].AddRange(times.EnumerateArray().Select(t => t.GetDouble()));
        }
        Console.WriteLine($"JPEG decode, {files.Count} files, {rounds} rounds x {repeats} repeats, median ms; peer {peerName}; load average {LoadAverage()}");
        Console.WriteLine($"{"file",-48} {"size",11} {"sampling",8} {"graft",8} {"PIL",8} {"ratio",6}");
        var ratios = new List<double>();
        for (int i = 0; i < files.Count; i++)
        {
            double o = Median(ours[i]), p = Median(pil[i]);
            ratios.Add(p / o);
            var h = files[i].Header;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{Shorten(files[i].Path),-48} {h.Width + "x" + h.Height,11} {Sampling(files[i].Data),8} {o * 1e3,8:F1} {p * 1e3,8:F1} {p / o,6:F2}"));
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"ratio PIL/graft (above 1: graft faster): median {Median(ratios):F2}, worst {ratios.Min():F2}, best {ratios.Max():F2}; load average {LoadAverage()}"));
        return 0;
    }

    private static string Shorten(string path) => path.Length <= 48 ? path : "..." + path[^45..];

    /// <summary>The luma sampling factors of the frame (e.g. 2x2 for 4:2:0), or "gray".</summary>
    private static string Sampling(byte[] data)
    {
        for (int i = 2; i + 12 < data.Length; i++)
            if (data[i] == 0xFF && data[i + 1] is 0xC0 or 0xC1 or 0xC2)
                return data[i + 9] == 1 ? "gray" : $"{data[i + 11] >> 4}x{data[i + 11] & 15}{(data[i + 1] == 0xC2 ? " p" : "")}";
        return "?";
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";
}
