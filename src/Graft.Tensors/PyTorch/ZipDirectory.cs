using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Graft.Tensors.PyTorch;

/// <summary>One member of a zip archive: where its bytes are in the file and how they are stored.</summary>
internal sealed record ZipEntry(string Name, int Method, long DataOffset, long CompressedSize, long Size);

/// <summary>
/// The central directory of a zip archive (PKWARE APPNOTE 6.3), ZIP64 included, read without trusting any field:
/// every size and offset is checked against the file. PyTorch stores its members uncompressed (method 0), so a
/// member is a byte range of the file that can be read in place.
/// </summary>
internal static class ZipDirectory
{
    private const uint EndSignature = 0x06054b50, Zip64EndSignature = 0x06064b50, Zip64LocatorSignature = 0x07064b50;
    private const uint CentralSignature = 0x02014b50, LocalSignature = 0x04034b50;
    private const int MaxEntries = 1 << 22;

    public static bool LooksLikeZip(ReadOnlySpan<byte> head) => head.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(head) == LocalSignature;

    public static List<ZipEntry> Read(SafeFileHandle file, long length, string path)
    {
        int tailLength = (int)Math.Min(length, 22 + 65535);
        var tail = new byte[tailLength];
        ReadExactly(file, tail, length - tailLength, path);
        int end = -1;
        for (int i = tailLength - 22; i >= 0; i--)
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(i)) == EndSignature) { end = i; break; }
        if (end < 0) throw new PyTorchCheckpointException(path, "is a zip archive without an end-of-central-directory record (truncated?)", byteOffset: length);
        long endOffset = length - tailLength + end;
        var e = tail.AsSpan(end);
        long entries = BinaryPrimitives.ReadUInt16LittleEndian(e[10..]);
        long directorySize = BinaryPrimitives.ReadUInt32LittleEndian(e[12..]);
        long directoryOffset = BinaryPrimitives.ReadUInt32LittleEndian(e[16..]);
        if (entries == 0xFFFF || directorySize == 0xFFFFFFFF || directoryOffset == 0xFFFFFFFF)
        {
            if (endOffset < 20) throw new PyTorchCheckpointException(path, "ZIP64 sizes are announced but there is no ZIP64 locator", byteOffset: endOffset);
            var locator = new byte[20];
            ReadExactly(file, locator, endOffset - 20, path);
            if (BinaryPrimitives.ReadUInt32LittleEndian(locator) != Zip64LocatorSignature)
                throw new PyTorchCheckpointException(path, "ZIP64 sizes are announced but there is no ZIP64 locator", byteOffset: endOffset - 20);
            long zip64End = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(locator.AsSpan(8)), long.MaxValue);
            if (zip64End < 0 || zip64End > length - 56) throw new PyTorchCheckpointException(path, $"the ZIP64 end record's offset {zip64End} is outside the file", byteOffset: endOffset - 12);
            var record = new byte[56];
            ReadExactly(file, record, zip64End, path);
            if (BinaryPrimitives.ReadUInt32LittleEndian(record) != Zip64EndSignature)
                throw new PyTorchCheckpointException(path, "the ZIP64 end record has the wrong signature", byteOffset: zip64End);
            entries = Checked(BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(32)));
            directorySize = Checked(BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(40)));
            directoryOffset = Checked(BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(48)));
            endOffset = zip64End;
        }
        if (entries > MaxEntries) throw new PyTorchCheckpointException(path, $"the zip archive claims {entries} members, more than the {MaxEntries} allowed", byteOffset: endOffset);
        if (directoryOffset < 0 || directorySize < 0 || directoryOffset > endOffset || directorySize > endOffset - directoryOffset)
            throw new PyTorchCheckpointException(path, $"the central directory ({directorySize} bytes at {directoryOffset}) is outside the file", byteOffset: endOffset);
        var directory = new byte[directorySize];
        ReadExactly(file, directory, directoryOffset, path);
        var result = new List<ZipEntry>((int)entries);
        int at = 0;
        var local = new byte[30];
        for (long n = 0; n < entries; n++)
        {
            long where = directoryOffset + at;
            if (directory.Length - at < 46 || BinaryPrimitives.ReadUInt32LittleEndian(directory.AsSpan(at)) != CentralSignature)
                throw new PyTorchCheckpointException(path, $"central directory entry {n} is missing or damaged", byteOffset: where);
            var c = directory.AsSpan(at);
            int flags = BinaryPrimitives.ReadUInt16LittleEndian(c[8..]);
            int method = BinaryPrimitives.ReadUInt16LittleEndian(c[10..]);
            long compressed = BinaryPrimitives.ReadUInt32LittleEndian(c[20..]);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(c[24..]);
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(c[28..]);
            int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(c[30..]);
            int commentLength = BinaryPrimitives.ReadUInt16LittleEndian(c[32..]);
            long localOffset = BinaryPrimitives.ReadUInt32LittleEndian(c[42..]);
            if (directory.Length - at - 46 < nameLength + extraLength + commentLength)
                throw new PyTorchCheckpointException(path, $"central directory entry {n} runs past the directory", byteOffset: where);
            if ((flags & 1) != 0) throw new PyTorchCheckpointException(path, $"zip member {n} is encrypted", byteOffset: where);
            string name = Encoding.UTF8.GetString(c.Slice(46, nameLength));
            var extra = c.Slice(46 + nameLength, extraLength);
            ReadZip64Extra(extra, ref size, ref compressed, ref localOffset, path, where);
            if (localOffset < 0 || localOffset > length - 30) throw new PyTorchCheckpointException(path, $"zip member '{name}' starts outside the file ({localOffset})", byteOffset: where);
            ReadExactly(file, local, localOffset, path);
            if (BinaryPrimitives.ReadUInt32LittleEndian(local) != LocalSignature)
                throw new PyTorchCheckpointException(path, $"zip member '{name}' has no local header", byteOffset: localOffset);
            long dataOffset = localOffset + 30 + BinaryPrimitives.ReadUInt16LittleEndian(local.AsSpan(26)) + BinaryPrimitives.ReadUInt16LittleEndian(local.AsSpan(28));
            if (compressed < 0 || size < 0 || dataOffset > length || compressed > length - dataOffset)
                throw new PyTorchCheckpointException(path, $"zip member '{name}' ({compressed} bytes at {dataOffset}) runs past the end of the file", byteOffset: localOffset);
            if (method == 0 && compressed != size)
                throw new PyTorchCheckpointException(path, $"stored zip member '{name}' has {compressed} stored bytes but a size of {size}", byteOffset: where);
            result.Add(new ZipEntry(name, method, dataOffset, compressed, size));
            at += 46 + nameLength + extraLength + commentLength;
        }
        return result;
    }

    private static void ReadZip64Extra(ReadOnlySpan<byte> extra, ref long size, ref long compressed, ref long offset, string path, long where)
    {
        while (extra.Length >= 4)
        {
            int id = BinaryPrimitives.ReadUInt16LittleEndian(extra), length = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
            if (length > extra.Length - 4) throw new PyTorchCheckpointException(path, "a zip extra field runs past its entry", byteOffset: where);
            if (id == 1)
            {
                var field = extra.Slice(4, length);
                long Next(ref ReadOnlySpan<byte> f)
                {
                    if (f.Length < 8) throw new PyTorchCheckpointException(path, "a ZIP64 extra field is too short", byteOffset: where);
                    long value = Checked(BinaryPrimitives.ReadUInt64LittleEndian(f));
                    f = f[8..];
                    return value;
                }
                if (size == 0xFFFFFFFF) size = Next(ref field);
                if (compressed == 0xFFFFFFFF) compressed = Next(ref field);
                if (offset == 0xFFFFFFFF) offset = Next(ref field);
            }
            extra = extra[(4 + length)..];
        }
    }

    private static long Checked(ulong value) => value > long.MaxValue ? -1 : (long)value;

    public static void ReadExactly(SafeFileHandle file, Span<byte> buffer, long offset, string path)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = RandomAccess.Read(file, buffer[done..], offset + done);
            if (n <= 0) throw new PyTorchCheckpointException(path, $"the file ends before byte {offset + buffer.Length}", byteOffset: offset + done);
            done += n;
        }
    }
}
