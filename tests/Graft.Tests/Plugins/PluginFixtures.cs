using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>Shared pieces: the committed tiny checkpoints, a small front end, random plug-in weights, hashes and bits.</summary>
internal static class PluginFixtures
{
    public static readonly string[] Families = ["qwen2", "llama", "internlm2"];

    public static string ModelFolder(string family) => Path.Combine(GoldenCase.Folder("llm"), "models", family);

    /// <summary>4 tokens of 12 features per image.</summary>
    public static PatchPixelsFrontEnd Vision() => new(grid: 2, cells: 2);

    public static RgbImage Image(int seed, int width = 9, int height = 7)
    {
        var pixels = new byte[width * height * 3];
        new Random(seed).NextBytes(pixels);
        return new RgbImage(width, height, pixels);
    }

    /// <summary>A Bridge whose every weight is random and non-zero (not its initialisation), so nothing passes by being zero.</summary>
    public static Bridge RandomBridge(DecoderModel model, int seed)
    {
        var bridge = Bridge.Create(model, Vision(), new BridgeOptions { Seed = seed });
        var random = new Random(seed + 1000);
        foreach (var p in bridge.Parameters)
        {
            var span = p.Tensor.Span;
            for (int i = 0; i < span.Length; i++) span[i] = (float)(random.NextDouble() * 2 - 1) * 0.5f + (random.Next(2) == 0 ? -0.05f : 0.05f);
        }
        return bridge;
    }

    public static int[] Bits(Tensor t) => Array.ConvertAll(t.ToArray(), BitConverter.SingleToInt32Bits);

    /// <summary>SHA-256 over every byte of every base tensor (stored type).</summary>
    public static string HashWeights(DecoderModel model)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var t in model.Weights.All())
            hash.AppendData(t.DType == DType.F32 ? MemoryMarshal.AsBytes(t.Span) : MemoryMarshal.AsBytes(t.HalfBits));
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    /// <summary>SHA-256 of every file of a folder, by name.</summary>
    public static string HashFolder(string folder)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var file in Directory.GetFiles(folder).OrderBy(f => f, StringComparer.Ordinal))
        {
            hash.AppendData(System.Text.Encoding.UTF8.GetBytes(Path.GetFileName(file)));
            hash.AppendData(File.ReadAllBytes(file));
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }
}

/// <summary>A temporary folder removed on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"graft-plugins-{Guid.NewGuid():N}");

    public string Sub(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
    }
}
