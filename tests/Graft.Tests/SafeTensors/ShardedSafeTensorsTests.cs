using System.Text.Json;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Tests.SafeTensors;

public sealed class ShardedSafeTensorsTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public ShardedSafeTensorsTests()
    {
        SafeTensorsWriter.Write(_folder.File("s1.safetensors"), [new("a", Tensor.FromArray([1f, 2f], 2)), new("b", Tensor.FromArray([3f], 1))]);
        SafeTensorsWriter.Write(_folder.File("s2.safetensors"), [new("c", Tensor.FromArray([4f], 1))]);
    }

    public void Dispose() => _folder.Dispose();

    private string Index(string json) => _folder.Bytes(ShardedSafeTensors.IndexFileName, System.Text.Encoding.UTF8.GetBytes(json));

    private static string Map(params (string Tensor, string Shard)[] entries) =>
        "{\"metadata\":{\"total_size\":16,\"format\":\"pt\"},\"weight_map\":" + JsonSerializer.Serialize(entries.ToDictionary(e => e.Tensor, e => e.Shard)) + "}";

    private SafeTensorsException Rejects(string json, string problem, string? tensor = null, bool namesIndex = true)
    {
        var path = Index(json);
        var e = Assert.Throws<SafeTensorsException>(() => ShardedSafeTensors.Open(path));
        Assert.Contains(problem, e.Message);
        Assert.Equal(tensor, e.TensorName);
        if (namesIndex) Assert.Equal(path, e.File);
        return e;
    }

    [Fact]
    public void LooksUpAcrossShards()
    {
        using var checkpoint = ShardedSafeTensors.Open(Index(Map(("a", "s1.safetensors"), ("c", "s2.safetensors"), ("b", "s1.safetensors"))));
        Assert.Equal(["a", "c", "b"], checkpoint.Tensors.Select(t => t.Name));
        Assert.Equal([4f], checkpoint.ReadFloats("c"));
        Assert.Equal([1f, 2f], checkpoint.Load("a").ToArray());
        Assert.True(checkpoint.Contains("b"));
        Assert.Equal("16", checkpoint.Metadata["total_size"]);
        Assert.Equal("pt", checkpoint.Metadata["format"]);
        Assert.EndsWith("s2.safetensors", checkpoint.Shard("c").Path);
    }

    [Fact]
    public void ShardMissing() => Rejects(Map(("a", "s1.safetensors"), ("b", "s1.safetensors"), ("c", "s9.safetensors")), "shard 's9.safetensors' does not exist", "c");

    [Fact]
    public void TensorNotInItsShard() =>
        Rejects(Map(("a", "s1.safetensors"), ("b", "s2.safetensors"), ("c", "s2.safetensors")), "puts it in shard 's2.safetensors', which does not hold it", "b");

    [Fact]
    public void ShardTensorMissingFromTheMap() => Rejects(Map(("a", "s1.safetensors"), ("c", "s2.safetensors")), "shard 's1.safetensors' holds it, but the weight map does not list it", "b");

    [Fact]
    public void TensorInTwoShards()
    {
        SafeTensorsWriter.Write(_folder.File("s3.safetensors"), [new("a", Tensor.FromArray([9f], 1))]);
        var e = Rejects(Map(("a", "s1.safetensors"), ("b", "s1.safetensors"), ("c", "s2.safetensors"), ("x", "s3.safetensors")), "which does not hold it", "x");
        SafeTensorsWriter.Write(_folder.File("s3.safetensors"), [new("a", Tensor.FromArray([9f], 1)), new("x", Tensor.FromArray([9f], 1))]);
        e = Rejects(Map(("a", "s1.safetensors"), ("b", "s1.safetensors"), ("c", "s2.safetensors"), ("x", "s3.safetensors")), "also stored in shard 's1.safetensors'", "a", namesIndex: false);
        Assert.EndsWith("s3.safetensors", e.File);
    }

    [Fact]
    public void DuplicateTensorInTheWeightMap()
    {
        const string json = "{\"weight_map\":{\"a\":\"s1.safetensors\",\"a\":\"s2.safetensors\"}}";
        var e = Rejects(json, "appears twice in weight_map", "a");
        Assert.Equal(json.IndexOf(",\"a\"", StringComparison.Ordinal) + 1, e.ByteOffset);
    }

    [Theory]
    [InlineData("{\"weight_map\":{\"a\":\"../s1.safetensors\"}}", "not a plain file name", "a")]
    [InlineData("{\"weight_map\":{\"a\":\"/etc/passwd\"}}", "not a plain file name", "a")]
    [InlineData("{\"weight_map\":{\"a\":1}}", "weight_map value is Number", "a")]
    [InlineData("{\"weight_map\":[]}", "weight_map is StartArray", null)]
    [InlineData("{\"weight_map\":{}}", "weight_map is empty", null)]
    [InlineData("{\"metadata\":{}}", "index has no weight_map", null)]
    [InlineData("{\"weights\":{}}", "unexpected key 'weights'", null)]
    [InlineData("[1]", "index is not a JSON object", null)]
    [InlineData("{\"weight_map\":{\"a\":", "not valid JSON", null)]
    [InlineData("{\"metadata\":{\"k\":1,\"k\":2},\"weight_map\":{\"a\":\"s1.safetensors\"}}", "metadata key 'k' appears twice", null)]
    public void MalformedIndex(string json, string problem, string? tensor) => Rejects(json, problem, tensor);

    [Fact]
    public void BrokenShardIsNamed()
    {
        _folder.Bytes("s2.safetensors", [1, 2, 3]);
        var e = Rejects(Map(("a", "s1.safetensors"), ("b", "s1.safetensors"), ("c", "s2.safetensors")), "shorter than the 8-byte header length", namesIndex: false);
        Assert.EndsWith("s2.safetensors", e.File);
    }

    [Fact]
    public void CheckpointFolderPrefersTheSingleFileThenTheIndex()
    {
        Index(Map(("a", "s1.safetensors"), ("b", "s1.safetensors"), ("c", "s2.safetensors")));
        using (var sharded = SafeTensorsCheckpoint.Open(_folder.Path))
            Assert.IsType<ShardedSafeTensors>(sharded);
        File.Copy(_folder.File("s2.safetensors"), _folder.File(SafeTensorsCheckpoint.SingleFileName));
        using (var single = SafeTensorsCheckpoint.Open(_folder.Path))
            Assert.Equal(["c"], Assert.IsType<SafeTensorsFile>(single).Tensors.Select(t => t.Name));
        using var direct = SafeTensorsCheckpoint.Open(_folder.File(ShardedSafeTensors.IndexFileName));
        Assert.Equal(3, direct.Tensors.Count);
    }

    [Fact]
    public void CheckpointFolderWithNeitherListsWhatItFound()
    {
        var e = Assert.Throws<SafeTensorsException>(() => SafeTensorsCheckpoint.Open(_folder.Path));
        Assert.Contains("found s1.safetensors, s2.safetensors", e.Message);
        Assert.Equal(_folder.Path, e.File);
        var absent = Assert.Throws<SafeTensorsException>(() => SafeTensorsCheckpoint.Open(_folder.File("nowhere")));
        Assert.Contains("no such file or folder", absent.Message);
    }
}
