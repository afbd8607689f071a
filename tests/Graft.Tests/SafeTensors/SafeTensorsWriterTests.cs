using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Tests.SafeTensors;

public sealed class SafeTensorsWriterTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    private static KeyValuePair<string, Tensor> Named(string name, params float[] values) => new(name, Tensor.FromArray(values, values.Length));

    [Fact]
    public void KeepsTheGivenOrderAndPadsTheHeaderToEightBytes()
    {
        var path = _folder.File("m.safetensors");
        SafeTensorsWriter.Write(path, [Named("z", 1), Named("a", 2, 3), Named("m")]);
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(["z", "a", "m"], file.Tensors.Select(t => t.Name));
        Assert.Equal([0L, 4, 12], file.Tensors.Select(t => t.Begin));
        long headerLength = BitConverter.ToInt64(File.ReadAllBytes(path), 0);
        Assert.Equal(0, headerLength % 8);
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void ReplacesAnExistingFileAndLeavesNoTemporaryFiles()
    {
        var path = _folder.File("m.safetensors");
        SafeTensorsWriter.Write(path, [Named("old", 1)]);
        SafeTensorsWriter.Write(path, [Named("new", 5, 6)], new Dictionary<string, string> { ["k"] = "v" });
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal([5f, 6f], file.ReadFloats("new"));
        Assert.Equal("v", file.Metadata["k"]);
        Assert.Equal([path], Directory.GetFiles(_folder.Path));
    }

    [Fact]
    public void FailedRenameRemovesTheTemporaryFileAndKeepsTheTarget()
    {
        var target = _folder.File("taken");
        Directory.CreateDirectory(target);
        Assert.ThrowsAny<IOException>(() => SafeTensorsWriter.Write(target, [Named("a", 1)]));
        Assert.Empty(Directory.GetFiles(_folder.Path));
        Assert.True(Directory.Exists(target));
    }

    [Theory]
    [InlineData("a", "a", "tensor name 'a' appears twice")]
    [InlineData("a", "__metadata__", "'__metadata__' is reserved")]
    [InlineData("a", "", "tensor name is empty")]
    public void RejectsBadNamesBeforeWritingAnything(string first, string second, string problem)
    {
        var path = _folder.File("m.safetensors");
        var e = Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [Named(first, 1), Named(second, 2)]));
        Assert.Contains(problem, e.Message);
        Assert.Empty(Directory.GetFiles(_folder.Path));
    }

    [Fact]
    public void RejectsANameWithALoneSurrogate() => RejectsBadNamesBeforeWritingAnything("a", "bad" + '\ud800', "lone surrogate");

    [Fact]
    public void RejectsMetadataThatCannotBeUtf8()
    {
        var e = Assert.Throws<ArgumentException>(() =>
            SafeTensorsWriter.Write(_folder.File("m.safetensors"), [Named("a", 1)], new Dictionary<string, string> { ["k"] = "\udc00" }));
        Assert.Contains("metadata value of 'k'", e.Message);
    }

    [Fact]
    public void NamesWithQuotesControlCharactersAndUnicodeRoundTrip()
    {
        var path = _folder.File("m.safetensors");
        string[] names = ["a\"b", "tab\there", "back\\slash", "ünï 🙂", "<html>&"];
        SafeTensorsWriter.Write(path, names.Select((n, i) => Named(n, i)));
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(names, file.Tensors.Select(t => t.Name));
        Assert.Equal([4f], file.ReadFloats("<html>&"));
    }

    [Fact]
    public void MappedTensorsCanBeWrittenToAnotherFile()
    {
        var first = _folder.File("a.safetensors");
        var second = _folder.File("b.safetensors");
        var bits = new ushort[] { 0x7FC0, 0x8000, 0x0001, 0x3F80 };
        SafeTensorsWriter.Write(first, [new("h", Tensor.FromHalfBits(bits, DType.BF16, 2, 2)), new("s", Tensor.FromArray([float.Epsilon]))]);
        using (var file = SafeTensorsFile.Open(first))
            SafeTensorsWriter.Write(second, file.Tensors.Select(t => new KeyValuePair<string, Tensor>(t.Name, file.Load(t.Name))));
        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));
    }
}
