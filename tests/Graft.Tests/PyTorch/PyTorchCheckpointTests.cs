using System.Text.Json;
using Graft.Tensors;
using Graft.Tensors.PyTorch;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.PyTorch;

/// <summary>Checkpoints written by PyTorch 1.13 (tools/reference/pytorch_golden.py) in both layouts, read back element for element.</summary>
public sealed class PyTorchCheckpointTests
{
    private static string File(string name) => Path.Combine(GoldenCase.Folder("pytorch"), name);

    [Theory]
    [InlineData("state_zip.pt", PyTorchFormat.Zip)]
    [InlineData("state_legacy.pt", PyTorchFormat.Legacy)]
    public void EveryTensorMatchesWhatPyTorchSaved(string name, PyTorchFormat format)
    {
        using var checkpoint = PyTorchCheckpointFile.Open(File(name));
        using var expected = SafeTensorsFile.Open(File("expected.safetensors"));
        Assert.Equal(format, checkpoint.Format);
        var names = expected.Tensors.Select(t => t.Name).Where(n => !n.StartsWith("plain.", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(names, checkpoint.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal).ToArray());
        foreach (var tensorName in names) AssertSame(expected, tensorName, checkpoint, tensorName);

        Assert.False(checkpoint.Info("model.transposed").IsContiguous);
        Assert.Equal(1, checkpoint.Info("model.rows").StorageOffset);
        Assert.Same(checkpoint.Info("model.shared_a").Storage, checkpoint.Info("model.shared_b").Storage);
        Assert.Equal(DType.BF16, checkpoint.Load("model.bf16").DType);
        Assert.Equal(DType.F16, checkpoint.Load("model.f16").DType);
        Assert.Equal(TorchDType.Float64, checkpoint.Info("model.f64").DType);
    }

    [Theory]
    [InlineData("state_zip.pt")]
    [InlineData("state_legacy.pt")]
    public void PlainValuesAreRebuilt(string name)
    {
        using var checkpoint = PyTorchCheckpointFile.Open(File(name));
        var root = Assert.IsType<PickleDict>(checkpoint.Root);
        object? Get(string key) => root.Single(p => (string?)p.Key == key).Value;
        Assert.Equal(3L, Get("epoch"));
        Assert.Equal(new object?[] { "a", "b", 1.5, null, true }, Assert.IsType<PickleList>(Get("names")).ToArray());
        Assert.Equal(new byte[] { 0, 1, (byte)'b', (byte)'y', (byte)'t', (byte)'e', (byte)'s' }, Assert.IsType<byte[]>(Get("blob")));
    }

    [Theory]
    [InlineData("plain_zip.bin", PyTorchFormat.Zip)]
    [InlineData("plain_legacy.bin", PyTorchFormat.Legacy)]
    public void BareStateDictsKeepTheirNamesAndBf16(string name, PyTorchFormat format)
    {
        using var checkpoint = PyTorchCheckpointFile.Open(File(name));
        using var expected = SafeTensorsFile.Open(File("expected.safetensors"));
        Assert.Equal(format, checkpoint.Format);
        Assert.Equal(["model.mm_projector.0.weight", "model.mm_projector.2.weight"], checkpoint.Tensors.Select(t => t.Name).ToArray());
        foreach (var info in checkpoint.Tensors)
        {
            Assert.Equal(DType.BF16, checkpoint.Load(info.Name).DType);
            AssertSame(expected, "plain." + info.Name, checkpoint, info.Name);
        }
    }

    public static TheoryData<string> HostileFiles()
    {
        var data = new TheoryData<string>();
        foreach (var p in JsonDocument.Parse(System.IO.File.ReadAllText(File("hostile.json"))).RootElement.EnumerateObject()) data.Add(p.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(HostileFiles))]
    public void OtherGlobalsAreRefusedWithTheirNameAndOffset(string name)
    {
        var expected = JsonDocument.Parse(System.IO.File.ReadAllText(File("hostile.json"))).RootElement.GetProperty(name);
        var error = Assert.Throws<PyTorchCheckpointException>(() => PyTorchCheckpointFile.Open(File(name)));
        Assert.Contains($"'{expected.GetProperty("global").GetString()}'", error.Message);
        Assert.Equal(expected.GetProperty("offset").GetInt64(), error.ByteOffset);
        Assert.Equal(File(name), error.File);
    }

    [Fact]
    public void FilesThatAreNotCheckpointsAreRefused()
    {
        using var folder = new Graft.Tests.SafeTensors.TempFolder();
        var text = folder.Bytes("text.bin", "hello, world"u8.ToArray());
        Assert.Contains("neither a zip-format nor a legacy", Assert.Throws<PyTorchCheckpointException>(() => PyTorchCheckpointFile.Open(text)).Message);
        var empty = folder.Bytes("empty.bin", []);
        Assert.Throws<PyTorchCheckpointException>(() => PyTorchCheckpointFile.Open(empty));
        var safetensors = File("expected.safetensors");
        Assert.Throws<PyTorchCheckpointException>(() => PyTorchCheckpointFile.Open(safetensors));
    }

    private static void AssertSame(SafeTensorsFile expected, string expectedName, PyTorchCheckpointFile checkpoint, string name)
    {
        var info = expected.Info(expectedName);
        var got = checkpoint.Info(name);
        Assert.Equal(info.Shape, got.Shape);
        if (info.DType is DType.F32 or DType.F16 or DType.BF16)
        {
            var tensor = checkpoint.Load(name);
            Assert.Equal(info.DType, tensor.DType);
            Assert.Equal(expected.RawBytes(expectedName).ToArray(), Tensor.AsBytes(tensor).ToArray());
        }
        else Assert.Equal(expected.ReadIntegers(expectedName), checkpoint.ReadIntegers(name));
    }
}
