using System.Text.Json;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.SafeTensors;

/// <summary>Files written by tools/reference/safetensors_golden.py (an independent writer) against the bits it recorded.</summary>
public sealed class SafeTensorsGoldenTests
{
    private static readonly string Folder = GoldenCase.Folder("safetensors");
    private static readonly JsonElement Expected = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Folder, "expected.json"))).RootElement;

    public static TheoryData<string> GoldenFiles()
    {
        var data = new TheoryData<string>();
        foreach (var file in Expected.GetProperty("files").EnumerateObject()) data.Add(file.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(GoldenFiles))]
    public void ReadsEveryTensorBitExact(string relative)
    {
        var spec = Expected.GetProperty("files").GetProperty(relative);
        using var file = SafeTensorsFile.Open(Path.Combine(Folder, relative));
        AssertMatches(spec, file);
    }

    [Fact]
    public void AlignedFloatTensorsPointIntoTheMappingAndMisalignedOnesAreCopied()
    {
        using (var file = SafeTensorsFile.Open(Path.Combine(Folder, "all_dtypes.safetensors")))
        {
            Assert.True(file.Load("f32").IsReadOnly);
            Assert.True(file.Load("bf16").IsReadOnly);
            Assert.Equal([], file.Load("scalar").Shape);
            Assert.Equal([2.5f], file.ReadFloats("scalar"));
            Assert.Equal([0, 4], file.Load("empty_f32").Shape);
        }
        using var misaligned = SafeTensorsFile.Open(Path.Combine(Folder, "misaligned.safetensors"));
        var f32 = misaligned.Load("f32");
        Assert.False(f32.IsReadOnly);
        Assert.Equal([1.5f, -2.25f], f32.ToArray());
        Assert.Equal([1f, -2f], misaligned.ReadFloats("bf16")[..2]);
    }

    [Fact]
    public void MappedTensorsRefuseTrainingAndUseAfterDispose()
    {
        var file = SafeTensorsFile.Open(Path.Combine(Folder, "all_dtypes.safetensors"));
        var tensor = file.Load("f32");
        var error = Assert.Throws<InvalidOperationException>(() => tensor.RequiresGrad = true);
        Assert.Contains("f32", error.Message);
        var copy = tensor.ToDType(DType.F32);
        copy.RequiresGrad = true;
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => tensor.ToArray());
        Assert.Throws<ObjectDisposedException>(() => file.Load("f32"));
        Assert.Equal(6, copy.ToArray().Length);
    }

    [Fact]
    public void ShardedCheckpointMatchesItsShards()
    {
        using var checkpoint = SafeTensorsCheckpoint.Open(Path.Combine(Folder, "sharded"));
        var sharded = Assert.IsType<ShardedSafeTensors>(checkpoint);
        Assert.Equal(2, sharded.Shards.Count);
        Assert.Equal(["embed.weight", "layers.0.weight", "layers.1.weight", "positions"], sharded.Tensors.Select(t => t.Name));
        long total = sharded.Tensors.Sum(t => t.ByteLength);
        Assert.Equal(total.ToString(), sharded.Metadata["total_size"]);
        foreach (var shard in Expected.GetProperty("files").EnumerateObject().Where(f => f.Name.StartsWith("sharded")))
            AssertMatches(shard.Value, sharded, checkHeaderOrder: false);
        Assert.Same(sharded.Shards[1], sharded.Shard("positions"));
        var missing = Assert.Throws<SafeTensorsException>(() => sharded.Load("nope"));
        Assert.Equal("nope", missing.TensorName);
        Assert.EndsWith(ShardedSafeTensors.IndexFileName, missing.File);
    }

    [Fact]
    public void WriterRoundTripsEveryBit()
    {
        using var folder = new TempFolder();
        var path = folder.File("round.safetensors");
        var (tensors, metadata) = WrittenByGraftSpec();
        SafeTensorsWriter.Write(path, tensors, metadata);
        using var file = SafeTensorsFile.Open(path);
        AssertMatches(Expected.GetProperty("written_by_graft"), file);
        Assert.Equal(0, (new FileInfo(path).Length - file.Tensors.Sum(t => t.ByteLength)) % 8);
    }

    /// <summary>Keeps the committed file (checked by safetensors_golden.py --check) in step with the writer.</summary>
    [Fact]
    public void WriterOutputMatchesCommittedFile()
    {
        var folder = new TempFolder();
        var path = folder.File("written_by_graft.safetensors");
        var (tensors, metadata) = WrittenByGraftSpec();
        SafeTensorsWriter.Write(path, tensors, metadata);
        var committed = Path.Combine(Folder, "written_by_graft.safetensors");
        bool same = File.ReadAllBytes(path).AsSpan().SequenceEqual(File.ReadAllBytes(committed));
        Assert.True(same, $"the writer's output changed: if intended, copy {path} over tests/Graft.Tests/Golden/safetensors/written_by_graft.safetensors "
            + "and run /usr/bin/python3 tools/reference/safetensors_golden.py --check on it");
        folder.Dispose();
    }

    private static (List<KeyValuePair<string, Tensor>> Tensors, Dictionary<string, string> Metadata) WrittenByGraftSpec()
    {
        var spec = Expected.GetProperty("written_by_graft");
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var t in spec.GetProperty("tensors").EnumerateArray())
        {
            var shape = t.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray();
            var bits = t.GetProperty("bits").EnumerateArray().Select(b => b.GetUInt32()).ToArray();
            var dtype = Enum.Parse<DType>(t.GetProperty("dtype").GetString()!, ignoreCase: true);
            var tensor = dtype == DType.F32
                ? Tensor.FromArray(bits.Select(BitConverter.UInt32BitsToSingle).ToArray(), shape)
                : Tensor.FromHalfBits(bits.Select(b => (ushort)b).ToArray(), dtype, shape);
            tensors.Add(new(t.GetProperty("name").GetString()!, tensor));
        }
        var metadata = spec.GetProperty("metadata").EnumerateObject().ToDictionary(m => m.Name, m => m.Value.GetString()!);
        return (tensors, metadata);
    }

    private static void AssertMatches(JsonElement spec, ISafeTensorsReader file, bool checkHeaderOrder = true)
    {
        var tensors = spec.GetProperty("tensors").EnumerateArray().ToList();
        if (checkHeaderOrder)
        {
            Assert.Equal(tensors.Select(t => t.GetProperty("name").GetString()), file.Tensors.Select(t => t.Name));
            Assert.Equal(spec.GetProperty("metadata").EnumerateObject().ToDictionary(m => m.Name, m => m.Value.GetString()!), file.Metadata);
        }
        foreach (var t in tensors)
        {
            string name = t.GetProperty("name").GetString()!;
            var info = file.Info(name);
            Assert.Equal(t.GetProperty("dtype").GetString(), info.DType.SafeTensorsName());
            Assert.Equal(t.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()), info.Shape);
            var bits = t.GetProperty("bits").EnumerateArray().Select(b => b.GetDecimal()).ToArray();
            decimal[] actual = info.DType switch
            {
                DType.F32 => file.Load(name).Span.ToArray().Select(v => (decimal)BitConverter.SingleToUInt32Bits(v)).ToArray(),
                DType.F16 or DType.BF16 => file.Load(name).HalfBits.ToArray().Select(v => (decimal)v).ToArray(),
                _ => file.ReadIntegers(name).Select(v => (decimal)v).ToArray(),
            };
            Assert.True(bits.SequenceEqual(actual), $"{name}: [{string.Join(", ", actual)}], expected [{string.Join(", ", bits)}]");
        }
    }
}
