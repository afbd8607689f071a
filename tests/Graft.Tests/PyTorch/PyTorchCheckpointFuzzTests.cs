using Graft.Tensors.PyTorch;
using Graft.Tests.Support;

namespace Graft.Tests.PyTorch;

/// <summary>
/// Seeded mutations of checkpoints PyTorch wrote (both layouts): every outcome must be a clean open and read of every
/// tensor, or a <see cref="PyTorchCheckpointException"/>; never another exception, a crash or a hang.
/// </summary>
public sealed class PyTorchCheckpointFuzzTests
{
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(10);
    private static readonly string[] Bases = ["state_zip.pt", "state_legacy.pt", "plain_zip.bin", "plain_legacy.bin", "hostile_namespace_zip.pt"];

    [Fact]
    public void MutatedCheckpointsOpenOrFailWithPyTorchCheckpointException() => Run(randomCasesPerBase: 300, seed: 20261206, everyCut: false);

    [Fact]
    [Trait("Category", "Slow")]
    public void ManyMoreMutatedCheckpointsOpenOrFailWithPyTorchCheckpointException() => Run(randomCasesPerBase: 20_000, seed: 11, everyCut: true);

    private static void Run(int randomCasesPerBase, int seed, bool everyCut)
    {
        using var folder = new Graft.Tests.SafeTensors.TempFolder();
        var path = folder.File("fuzz.pt");
        var random = new Random(seed);
        int opened = 0, rejected = 0;
        foreach (var baseName in Bases)
        {
            var original = File.ReadAllBytes(Path.Combine(GoldenCase.Folder("pytorch"), baseName));
            var cuts = Enumerable.Range(0, original.Length).Where(c => everyCut || c % 7 == 0 || c < 16 || c > original.Length - 64);
            var cases = cuts.Select(c => ($"truncated to {c} bytes", original[..c])).Concat(Mutations(original, random, randomCasesPerBase));
            foreach (var (what, bytes) in cases)
            {
                if (Attempt(path, bytes, $"{baseName}: {what}")) opened++;
                else rejected++;
            }
        }
        Assert.True(opened > 0 && rejected > 0, $"{opened} opened, {rejected} rejected: the mutations should produce both");
    }

    private static IEnumerable<(string, byte[])> Mutations(byte[] file, Random random, int count)
    {
        byte[] opcodes = [0x80, 0x95, 0x2e, 0x28, 0x4e, 0x4a, 0x4b, 0x8a, 0x8b, 0x58, 0x8c, 0x5d, 0x7d, 0x29, 0x74, 0x85, 0x86, 0x87, 0x61, 0x65,
            0x73, 0x75, 0x71, 0x72, 0x94, 0x68, 0x6a, 0x63, 0x93, 0x52, 0x81, 0x62, 0x51, 0x69, 0x6f, 0x30, 0x31, 0x32, 0xff];
        for (int i = 0; i < count; i++)
        {
            var copy = (byte[])file.Clone();
            switch (random.Next(5))
            {
                case 0:
                    for (int f = random.Next(1, 4); f > 0; f--) copy[random.Next(copy.Length)] = (byte)random.Next(256);
                    yield return ($"case {i}: bytes replaced", copy);
                    break;
                case 1:
                    for (int f = random.Next(1, 9); f > 0; f--) copy[random.Next(copy.Length)] ^= (byte)(1 << random.Next(8));
                    yield return ($"case {i}: bits flipped", copy);
                    break;
                case 2:
                    copy[random.Next(copy.Length)] = opcodes[random.Next(opcodes.Length)];
                    yield return ($"case {i}: an opcode written", copy);
                    break;
                case 3:
                {
                    int at = random.Next(copy.Length - 4);
                    var value = random.Next(4) switch { 0 => uint.MaxValue, 1 => 0x7FFFFFFFu, 2 => 0u, _ => (uint)random.Next() };
                    BitConverter.TryWriteBytes(copy.AsSpan(at), value);
                    yield return ($"case {i}: a 32-bit field at {at} became {value}", copy);
                    break;
                }
                default:
                {
                    int at = random.Next(copy.Length), length = random.Next(1, 17);
                    yield return ($"case {i}: {length} bytes deleted at {at}", [.. copy[..at], .. copy[Math.Min(copy.Length, at + length)..]]);
                    break;
                }
            }
        }
    }

    /// <summary>True when the file opened and every tensor read; false when it was refused with a PyTorchCheckpointException.</summary>
    private static bool Attempt(string path, byte[] bytes, string what)
    {
        using (var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.Write))
        {
            stream.Write(bytes);
            stream.SetLength(bytes.Length);
        }
        var task = Task.Run(() =>
        {
            try
            {
                using var file = PyTorchCheckpointFile.Open(path);
                foreach (var info in file.Tensors)
                {
                    if (info.IsFloat) file.Load(info.Name);
                    else file.ReadIntegers(info.Name);
                }
                return null;
            }
            catch (Exception e)
            {
                return e;
            }
        });
        Assert.True(task.Wait(CaseTimeout), $"{what}: still running after {CaseTimeout}");
        var error = task.Result;
        Assert.True(error is null or PyTorchCheckpointException, $"{what}: {error}");
        if (error is PyTorchCheckpointException rejected) Assert.Equal(path, rejected.File);
        return error is null;
    }
}
