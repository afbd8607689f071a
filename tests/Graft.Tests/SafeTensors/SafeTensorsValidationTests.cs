using System.Text;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Tests.SafeTensors;

/// <summary>One test per validation rule; each checks the message names the file, and the tensor and byte offset where they apply.</summary>
public sealed class SafeTensorsValidationTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    /// <summary>File offset of the first occurrence of a piece of header text (8 = start of the header).</summary>
    private static long At(string header, string token) => 8 + header.IndexOf(token, StringComparison.Ordinal);

    private static string Entry(string name, string dtype, string shape, long begin, long end) =>
        $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}";

    private string One(string header, int dataBytes) => _folder.Raw("t.safetensors", header, new byte[dataBytes]);

    [Fact]
    public void AcceptsScalarsEmptyTensorsAndAnEmptyHeader()
    {
        var path = One("{" + Entry("empty", "F32", "[3,0]", 0, 0) + "," + Entry("scalar", "I32", "[]", 0, 4) + "," + Entry("none", "BOOL", "[0]", 4, 4) + "}", 4);
        using (var file = SafeTensorsFile.Open(path))
        {
            Assert.Equal([3, 0], file.Load("empty").Shape);
            Assert.Equal(0, file.Load("empty").Length);
            Assert.Equal([0L], file.ReadIntegers("scalar"));
            Assert.Empty(file.ReadIntegers("none"));
        }
        using var nothing = SafeTensorsFile.Open(_folder.Raw("e.safetensors", "{}"));
        Assert.Empty(nothing.Tensors);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    public void FileShorterThanTheLengthPrefix(int length) =>
        SafeTensorsAssert.Rejects(_folder.Bytes("short.safetensors", new byte[length]), "shorter than the 8-byte header length", offset: 0);

    [Fact]
    public void MissingFile()
    {
        var path = _folder.File("absent.safetensors");
        var e = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path));
        Assert.Equal(path, e.File);
        Assert.Contains("cannot open", e.Message);
    }

    [Theory]
    [InlineData(ulong.MaxValue)]
    [InlineData(0x8000_0000_0000_0000UL)]
    [InlineData(17UL)]
    public void HeaderLengthPastTheEndOfTheFile(ulong length) =>
        SafeTensorsAssert.Rejects(_folder.Raw("t.safetensors", "{}", headerLength: length), "runs past the end of the file", offset: 0);

    [Fact]
    public void HeaderLengthOverTheCap()
    {
        var path = One("{" + Entry("a", "F32", "[1]", 0, 4) + "}", 4);
        var e = Assert.Throws<SafeTensorsException>(() => SafeTensorsFile.Open(path, new SafeTensorsLimits { MaxHeaderBytes = 16 }));
        Assert.Contains("exceeds the 16-byte limit", e.Message);
        Assert.Equal(0, e.ByteOffset);
        Assert.Equal(100_000_000, SafeTensorsLimits.Default.MaxHeaderBytes);
    }

    [Fact]
    public void HeaderNotUtf8()
    {
        var header = Encoding.UTF8.GetBytes("{\"ab\":{}}   ");
        header[3] = 0xFF;
        SafeTensorsAssert.Rejects(_folder.Bytes("t.safetensors", [.. BitConverter.GetBytes((ulong)header.Length), .. header]), "not valid UTF-8", offset: 11);
    }

    [Theory]
    [InlineData("[]", "not a JSON object")]
    [InlineData("\"x\"", "not a JSON object")]
    [InlineData("{\"a\":", "not valid JSON")]
    [InlineData("{} x", "not valid JSON")]
    [InlineData("{,}", "not valid JSON")]
    [InlineData("", "not valid JSON")]
    public void HeaderNotAJsonObject(string header, string problem)
    {
        var e = SafeTensorsAssert.Rejects(_folder.Raw("t.safetensors", header), problem);
        Assert.InRange(e.ByteOffset!.Value, 8, 8 + header.Length + 8);
    }

    [Fact]
    public void InvalidEscapeInAName()
    {
        const string header = "{\"\\ud800\":{}}";
        SafeTensorsAssert.Rejects(_folder.Raw("t.safetensors", header), "invalid string", offset: 9);
    }

    [Theory]
    [InlineData("[1,2]")]
    [InlineData("\"F32\"")]
    [InlineData("null")]
    public void EntryNotAnObject(string value)
    {
        var header = "{\"w\":" + value + "}";
        SafeTensorsAssert.Rejects(One(header, 0), "not an object", "w", At(header, value));
    }

    [Theory]
    [InlineData("dtype", "{\"shape\":[1],\"data_offsets\":[0,4]}")]
    [InlineData("shape", "{\"dtype\":\"F32\",\"data_offsets\":[0,4]}")]
    [InlineData("data_offsets", "{\"dtype\":\"F32\",\"shape\":[1]}")]
    public void EntryMissingAField(string field, string entry)
    {
        var header = "{\"w\":" + entry + "}";
        SafeTensorsAssert.Rejects(One(header, 4), $"missing field '{field}'", "w", At(header, entry));
    }

    [Fact]
    public void EntryWithAnExtraField()
    {
        const string header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"strides\":[1]}}";
        SafeTensorsAssert.Rejects(One(header, 4), "unexpected field 'strides'", "w", At(header, "\"strides\""));
    }

    [Fact]
    public void EntryWithAFieldTwice()
    {
        const string header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"dtype\":\"F32\",\"data_offsets\":[0,4]}}";
        SafeTensorsAssert.Rejects(One(header, 4), "field 'dtype' appears twice", "w", At(header, "\"dtype\":\"F32\",\"data"));
    }

    [Theory]
    [InlineData("\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]", "dtype is Number", "32")]
    [InlineData("\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]", "shape is String", "\"1\"")]
    [InlineData("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"a\":0}", "data_offsets is StartObject", "{\"a\"")]
    [InlineData("\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]", "shape holds String, not an integer", "\"1\"]")]
    [InlineData("\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]", "shape holds 1.5, not an integer", "1.5")]
    [InlineData("\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]", "shape holds 1e0, not an integer", "1e0")]
    [InlineData("\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]", "shape holds the negative value -1", "-1")]
    [InlineData("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]", "data_offsets holds 99999999999999999999, not an integer", "9999")]
    [InlineData("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]", "data_offsets holds the negative value -4", "-4")]
    [InlineData("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]", "data_offsets has 3 values, not 2", "[0,4,8]")]
    [InlineData("\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]", "unknown dtype 'F33'", "\"F33\"")]
    public void FieldOfTheWrongType(string fields, string problem, string token)
    {
        var header = "{\"w\":{" + fields + "}}";
        SafeTensorsAssert.Rejects(One(header, 4), problem, "w", At(header, token));
    }

    [Fact]
    public void DimensionLargerThanAnInt()
    {
        var header = "{" + Entry("w", "U8", "[2147483648]", 0, 4) + "}";
        SafeTensorsAssert.Rejects(One(header, 4), "larger than 2147483647", "w", At(header, "{\"dtype"));
    }

    [Fact]
    public void ShapeWhoseElementCountOverflows()
    {
        var header = "{" + Entry("w", "F32", "[2147483647,2147483647,2147483647]", 0, 4) + "}";
        SafeTensorsAssert.Rejects(One(header, 4), "more elements than a 64-bit byte count can hold", "w", At(header, "{\"dtype"));
    }

    [Fact]
    public void OffsetsNotAscending()
    {
        var header = "{" + Entry("w", "F32", "[1]", 4, 0) + "}";
        SafeTensorsAssert.Rejects(One(header, 4), "data_offsets [4, 0] are not ascending", "w", At(header, "{\"dtype"));
    }

    [Fact]
    public void OffsetsPastTheDataSection()
    {
        var header = "{" + Entry("w", "F32", "[2]", 0, 8) + "}";
        SafeTensorsAssert.Rejects(One(header, 4), "end past the data section (4 bytes)", "w", At(header, "{\"dtype"));
    }

    [Fact]
    public void ByteLengthNotElementsTimesDtypeSize()
    {
        var header = "{" + Entry("w", "BF16", "[3]", 0, 8) + "}";
        var path = One(header, 8);
        SafeTensorsAssert.Rejects(path, "span 8 bytes, but BF16 [3] needs 6", "w", 8 + (new FileInfo(path).Length - 8 - 8));
    }

    [Fact]
    public void TensorsOverlapping()
    {
        var header = "{" + Entry("a", "F32", "[2]", 0, 8) + "," + Entry("b", "F32", "[1]", 4, 8) + "}";
        var path = One(header, 8);
        long dataStart = new FileInfo(path).Length - 8;
        SafeTensorsAssert.Rejects(path, "overlaps tensor 'a' at [0, 8)", "b", dataStart + 4);
    }

    [Fact]
    public void GapBetweenTensors()
    {
        var header = "{" + Entry("a", "F32", "[1]", 0, 4) + "," + Entry("b", "F32", "[1]", 8, 12) + "}";
        var path = One(header, 12);
        long dataStart = new FileInfo(path).Length - 12;
        SafeTensorsAssert.Rejects(path, "4 bytes of the data section before it (from 4) belong to no tensor", "b", dataStart + 4);
    }

    [Fact]
    public void BytesAfterTheLastTensor()
    {
        var header = "{" + Entry("a", "F32", "[1]", 0, 4) + "}";
        var path = One(header, 6);
        long dataStart = new FileInfo(path).Length - 6;
        SafeTensorsAssert.Rejects(path, "the last 2 bytes of the data section belong to no tensor", null, dataStart + 4);
    }

    [Fact]
    public void DuplicateTensorName()
    {
        var header = "{" + Entry("a", "F32", "[1]", 0, 4) + "," + Entry("a", "F32", "[1]", 4, 8) + "}";
        SafeTensorsAssert.Rejects(One(header, 8), "'a' appears twice in the header", "a", At(header, ",\"a\"") + 1);
    }

    [Theory]
    [InlineData("[\"x\"]", "__metadata__ is StartArray, not an object of strings", "[\"x\"]")]
    [InlineData("{\"k\":1}", "__metadata__ value of 'k' is Number, not a string", "1}")]
    [InlineData("{\"k\":{\"n\":\"v\"}}", "__metadata__ value of 'k' is StartObject, not a string", "{\"n\"")]
    [InlineData("{\"k\":\"v\",\"k\":\"w\"}", "__metadata__ key 'k' appears twice", ",\"k\"")]
    public void MetadataNotStringToString(string metadata, string problem, string token)
    {
        var header = "{\"__metadata__\":" + metadata + "}";
        long offset = At(header, token) + (token.StartsWith(',') ? 1 : 0);
        SafeTensorsAssert.Rejects(One(header, 0), problem, offset: offset);
    }

    [Fact]
    public void MetadataTwice()
    {
        const string header = "{\"__metadata__\":{},\"__metadata__\":{}}";
        SafeTensorsAssert.Rejects(One(header, 0), "'__metadata__' appears twice", offset: At(header, ",\"__") + 1);
    }

    [Fact]
    public void ReadingATensorThatDoesNotExist()
    {
        var path = One("{" + Entry("a", "F32", "[1]", 0, 4) + "}", 4);
        using var file = SafeTensorsFile.Open(path);
        Assert.False(file.Contains("b"));
        foreach (var read in new Action[] { () => file.Info("b"), () => file.Load("b"), () => file.ReadFloats("b"), () => file.ReadIntegers("b"), () => file.RawBytes("b") })
        {
            var e = Assert.Throws<SafeTensorsException>(read);
            Assert.Equal("b", e.TensorName);
            Assert.Contains("no such tensor", e.Message);
            Assert.StartsWith(path, e.Message);
        }
    }

    [Fact]
    public void LoadingAnIntegerTensorAsFloatsAndTheReverse()
    {
        var path = One("{" + Entry("i", "I64", "[1]", 0, 8) + "," + Entry("f", "F16", "[2]", 8, 12) + "}", 12);
        using var file = SafeTensorsFile.Open(path);
        var e = Assert.Throws<SafeTensorsException>(() => file.Load("i"));
        Assert.Contains("is I64, not a float type", e.Message);
        Assert.Equal("i", e.TensorName);
        Assert.Throws<SafeTensorsException>(() => file.ReadFloats("i"));
        var reverse = Assert.Throws<SafeTensorsException>(() => file.ReadIntegers("f"));
        Assert.Contains("is F16, not an integer or boolean type", reverse.Message);
        Assert.Equal(DType.F16, file.Load("f").DType);
    }

    [Fact]
    public void BooleanStoredAsNeitherZeroNorOne()
    {
        var header = "{" + Entry("b", "BOOL", "[3]", 0, 3) + "}";
        var json = Encoding.UTF8.GetBytes(header).Length;
        int padded = (json + 7) / 8 * 8;
        var path = _folder.Raw("t.safetensors", header, [1, 0, 2]);
        SafeTensorsAssert.Rejects(path, "boolean element 2 is stored as 2", "b", 8 + padded + 2);
    }
}
