using System.Text;
using Graft.Tensors.SafeTensors;

namespace Graft.Tests.SafeTensors;

/// <summary>A temporary folder for hand-made safetensors files, removed on dispose.</summary>
public sealed class TempFolder : IDisposable
{
    public TempFolder() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "graft-st-" + Guid.NewGuid().ToString("N"));

    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>A file with the given header text (padded with spaces to 8 unless told otherwise) and data bytes.</summary>
    public string Raw(string name, string header, byte[]? data = null, ulong? headerLength = null, bool pad = true)
    {
        var json = Encoding.UTF8.GetBytes(header).ToList();
        while (pad && json.Count % 8 != 0) json.Add((byte)' ');
        return Bytes(name, [.. BitConverter.GetBytes(headerLength ?? (ulong)json.Count), .. json, .. data ?? []]);
    }

    public string Bytes(string name, byte[] bytes)
    {
        var path = File(name);
        System.IO.File.WriteAllBytes(path, bytes);
        return path;
    }

    public void Dispose()
    {
        if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
    }
}

public static class SafeTensorsAssert
{
    /// <summary>Opening (and loading everything from) the file fails with a message naming the file and the given tensor/offset.</summary>
    public static SafeTensorsException Rejects(string path, string problemFragment, string? tensor = null, long? offset = null)
    {
        var e = Assert.Throws<SafeTensorsException>(() =>
        {
            using var file = SafeTensorsFile.Open(path);
            LoadEverything(file);
        });
        Assert.Equal(path, e.File);
        Assert.StartsWith(path, e.Message);
        Assert.Contains(problemFragment, e.Problem);
        Assert.Equal(tensor, e.TensorName);
        if (tensor is not null) Assert.Contains($"tensor '{tensor}'", e.Message);
        if (offset is not null)
        {
            Assert.Equal(offset, e.ByteOffset);
            Assert.Contains($"byte {offset}", e.Message);
        }
        return e;
    }

    /// <summary>Reads every tensor the way a model would, touching all mapped memory.</summary>
    public static void LoadEverything(ISafeTensorsReader file)
    {
        foreach (var info in file.Tensors)
        {
            _ = file.RawBytes(info.Name).Length;
            if (info.DType is Graft.Tensors.DType.F32 or Graft.Tensors.DType.F16 or Graft.Tensors.DType.BF16) _ = file.ReadFloats(info.Name);
            else _ = file.ReadIntegers(info.Name);
        }
    }
}
