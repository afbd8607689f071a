using Graft.Tensors;

namespace Graft.Tests.Tensors;

public sealed class AtomicFileTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("graft-atomic-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public void A_write_that_fails_leaves_the_old_file_and_no_temporary_one()
    {
        string path = Path.Combine(_folder, "kept.json");
        AtomicFile.WriteAllText(path, "old");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write("new, half written"u8);
            throw new InvalidOperationException("disk full");
        }));
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Equal(["kept.json"], Directory.GetFiles(_folder).Select(Path.GetFileName));

        AtomicFile.WriteAllText(path, "new ünïcode");
        Assert.Equal("new ünïcode"u8.ToArray(), File.ReadAllBytes(path));   // UTF-8, no byte-order mark
        Assert.Single(Directory.GetFiles(_folder));
    }
}
