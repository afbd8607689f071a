using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.SafeTensors;

/// <summary>
/// Seeded mutations of valid files: every outcome must be a clean open and load of every tensor, or a
/// <see cref="SafeTensorsException"/>; never another exception, a crash or a hang.
/// </summary>
public sealed partial class SafeTensorsFuzzTests
{
    private static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(10);

    private static readonly string[] Bases =
    [
        "all_dtypes.safetensors", "misaligned.safetensors", "written_by_graft.safetensors", "sharded/model-00001-of-00002.safetensors",
    ];

    [Fact]
    public void MutatedFilesOpenOrFailWithSafeTensorsException() => Run(randomCasesPerBase: 200, seed: 20261122, everyCut: false);

    [Fact]
    [Trait("Category", "Slow")]
    public void ManyMoreMutatedFilesOpenOrFailWithSafeTensorsException() => Run(randomCasesPerBase: 25_000, seed: 7, everyCut: true);

    private static void Run(int randomCasesPerBase, int seed, bool everyCut)
    {
        using var folder = new TempFolder();
        var path = folder.File("fuzz.safetensors");
        var random = new Random(seed);
        int opened = 0, rejected = 0;
        foreach (var baseName in Bases)
        {
            var original = File.ReadAllBytes(Path.Combine(GoldenCase.Folder("safetensors"), baseName));
            var cases = Truncations(original, everyCut).Concat(HeaderLengths(original)).Concat(RandomMutations(original, random, randomCasesPerBase));
            foreach (var (what, bytes) in cases)
            {
                if (Attempt(path, bytes, $"{baseName}: {what}")) opened++;
                else rejected++;
            }
        }
        Assert.True(opened > 0 && rejected > 0, $"{opened} opened, {rejected} rejected: the mutations should produce both");
    }

    /// <summary>True when the file opened and loaded; false when it was rejected with a SafeTensorsException.</summary>
    private static bool Attempt(string path, byte[] bytes, string what)
    {
        // Rewriting in place: truncating to zero first makes ext4 flush to disk on close (auto_da_alloc), ~5 ms a case.
        using (var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.Write))
        {
            stream.Write(bytes);
            stream.SetLength(bytes.Length);
        }
        var task = Task.Run(() =>
        {
            try
            {
                using var file = SafeTensorsFile.Open(path);
                SafeTensorsAssert.LoadEverything(file);
                return null;
            }
            catch (Exception e)
            {
                return e;
            }
        });
        Assert.True(task.Wait(CaseTimeout), $"{what}: still running after {CaseTimeout}");
        var error = task.Result;
        Assert.True(error is null or SafeTensorsException, $"{what}: {error}");
        if (error is SafeTensorsException rejected) Assert.Equal(path, rejected.File);
        return error is null;
    }

    private static (long HeaderLength, string Header, byte[] Data) Split(byte[] file)
    {
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        return (n, Encoding.Latin1.GetString(file, 8, (int)n), file[(8 + (int)n)..]);
    }

    /// <summary>A file from header text (bytes kept one to one through Latin-1), with its length prefix recomputed or kept.</summary>
    private static byte[] Join(string header, byte[] data, long? keepLength = null)
    {
        var json = Encoding.Latin1.GetBytes(header);
        return [.. BitConverter.GetBytes(keepLength ?? json.Length), .. json, .. data];
    }

    /// <summary>
    /// Cuts inside the length prefix, at every JSON structural character of the header (or at every header byte),
    /// and around every tensor boundary in the data.
    /// </summary>
    private static IEnumerable<(string, byte[])> Truncations(byte[] file, bool everyCut)
    {
        var (n, header, _) = Split(file);
        var offsets = new SortedSet<long>();
        for (long i = 0; i <= 8 + n + 1 && i < file.Length; i++)
            if (everyCut || i <= 10 || i >= 8 + n - 1 || "{}[],:\"".Contains(header[(int)i - 8])) offsets.Add(i);
        foreach (Match m in DataOffsets().Matches(header))
        {
            foreach (var group in new[] { m.Groups[1], m.Groups[2] })
            {
                long boundary = 8 + n + long.Parse(group.Value);
                for (long d = -1; d <= 1; d++)
                    if (boundary + d >= 0 && boundary + d < file.Length) offsets.Add(boundary + d);
            }
        }
        return offsets.Select(cut => ($"truncated to {cut} bytes", file[..(int)cut]));
    }

    private static IEnumerable<(string, byte[])> HeaderLengths(byte[] file)
    {
        var (n, _, _) = Split(file);
        ulong[] lengths = [0, 1, 2, (ulong)n - 1, (ulong)n + 1, (ulong)(file.Length - 8), (ulong)(file.Length - 7), 100_000_001, int.MaxValue, (ulong)int.MaxValue + 9,
            long.MaxValue, 0x8000_0000_0000_0000, ulong.MaxValue, ulong.MaxValue - 7];
        foreach (var length in lengths)
        {
            var copy = (byte[])file.Clone();
            BinaryPrimitives.WriteUInt64LittleEndian(copy, length);
            yield return ($"header length {length}", copy);
        }
    }

    private static IEnumerable<(string, byte[])> RandomMutations(byte[] file, Random random, int count)
    {
        var (n, header, data) = Split(file);
        var entries = Entries().Matches(header);
        byte[][] notUtf8 = [[0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80], [0xE2, 0x82], [0x80]];
        const string jsonCharacters = "{}[],:\"-.e0123456789 \\tnul";
        for (int i = 0; i < count; i++)
        {
            bool keepLength = random.Next(4) == 0;
            long? kept = keepLength ? n : null;
            int kind = random.Next(10);
            switch (kind)
            {
                case 0:
                {
                    var copy = (byte[])file.Clone();
                    int flips = random.Next(1, 4);
                    for (int f = 0; f < flips; f++) copy[8 + random.Next((int)n)] = (byte)random.Next(256);
                    yield return ($"case {i}: {flips} header bytes flipped", copy);
                    break;
                }
                case 1:
                {
                    if (data.Length == 0) break;
                    var copy = (byte[])file.Clone();
                    for (int f = random.Next(1, 9); f > 0; f--) copy[8 + n + random.Next(data.Length)] ^= (byte)(1 << random.Next(8));
                    yield return ($"case {i}: data bits flipped", copy);
                    break;
                }
                case 2:
                {
                    var copy = (byte[])file.Clone();
                    var length = new byte[8];
                    random.NextBytes(length);
                    if (random.Next(2) == 0) length[7] = length[6] = length[5] = length[4] = length[3] = 0;
                    length.CopyTo(copy, 0);
                    yield return ($"case {i}: header length bytes {Convert.ToHexString(length)}", copy);
                    break;
                }
                case 3:
                {
                    var offsets = DataOffsets().Matches(header);
                    if (offsets.Count == 0) break;
                    var m = offsets[random.Next(offsets.Count)];
                    var edited = header[..m.Index] + $"\"data_offsets\":[{m.Groups[2].Value},{m.Groups[1].Value}]" + header[(m.Index + m.Length)..];
                    yield return ($"case {i}: offsets swapped at {m.Index}", Join(edited, data, kept));
                    break;
                }
                case 4:
                {
                    if (entries.Count == 0) break;
                    var m = entries[random.Next(entries.Count)];
                    var copyOf = random.Next(3) == 0 ? "\"__metadata__\":{\"a\":\"b\"}" : m.Value;
                    var edited = header[..(m.Index + m.Length)] + "," + copyOf + header[(m.Index + m.Length)..];
                    yield return ($"case {i}: key duplicated after {m.Index}", Join(edited, data, kept));
                    break;
                }
                case 5:
                {
                    int at = random.Next(header.Length + 1);
                    var bad = Encoding.Latin1.GetString(notUtf8[random.Next(notUtf8.Length)]);
                    yield return ($"case {i}: non-UTF-8 bytes at {at}", Join(header[..at] + bad + header[at..], data, kept));
                    break;
                }
                case 6:
                {
                    var digits = Enumerable.Range(0, header.Length).Where(p => char.IsAsciiDigit(header[p])).ToArray();
                    if (digits.Length == 0) break;
                    int at = digits[random.Next(digits.Length)];
                    var replacement = random.Next(4) switch { 0 => "9999999999999999999999", 1 => "-1", 2 => "1.5", _ => random.Next(10).ToString() };
                    yield return ($"case {i}: digit at {at} became {replacement}", Join(header[..at] + replacement + header[(at + 1)..], data, kept));
                    break;
                }
                case 7:
                {
                    int at = random.Next(header.Length);
                    int length = random.Next(1, Math.Min(16, header.Length - at) + 1);
                    yield return ($"case {i}: {length} header bytes deleted at {at}", Join(header[..at] + header[(at + length)..], data, kept));
                    break;
                }
                case 8:
                {
                    int at = random.Next(header.Length + 1);
                    char c = jsonCharacters[random.Next(jsonCharacters.Length)];
                    yield return ($"case {i}: '{c}' inserted at {at}", Join(header[..at] + c + header[at..], data, kept));
                    break;
                }
                default:
                {
                    int cut = random.Next(file.Length);
                    var extended = random.Next(2) == 0 ? file[..cut] : [.. file, .. new byte[random.Next(1, 9)]];
                    yield return ($"case {i}: resized to {extended.Length} bytes", extended);
                    break;
                }
            }
        }
    }

    [GeneratedRegex("\"data_offsets\":\\[(\\d+),(\\d+)\\]")]
    private static partial Regex DataOffsets();

    [GeneratedRegex("\"[^\"]*\":\\{\"dtype\":\"[^\"]*\",\"shape\":\\[[^\\]]*\\],\"data_offsets\":\\[\\d+,\\d+\\]\\}")]
    private static partial Regex Entries();
}
