using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Graft.Tensors.SafeTensors;

/// <summary>
/// A safetensors file (https://github.com/huggingface/safetensors) opened for reading: memory-mapped read-only,
/// its header validated in full on open, its tensors read lazily.
/// </summary>
/// <remarks>
/// Layout: a u64 little-endian header length N, N bytes of UTF-8 JSON, then the data section, which the tensors
/// must tile exactly. The file is opened for reading only and mapped read-only, so nothing here can modify it.
/// Tensors from <see cref="Load"/> point into the mapping without a copy (unless their data is misaligned for
/// their element type, which the format allows; those are copied). They are valid while this file is open
/// (afterwards touching their storage throws <see cref="ObjectDisposedException"/>) and are read-only
/// (<see cref="Tensor.IsReadOnly"/>): copy one with <see cref="Tensor.ToDType"/> to train or modify it.
/// Another process truncating the file while it is mapped makes the OS fault on access; that is not guarded.
/// Only little-endian hosts are supported (the format is little-endian and data is not byte-swapped).
/// </remarks>
public sealed unsafe class SafeTensorsFile : ISafeTensorsReader
{
    private readonly MemoryMappedFile _mapping;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafeTensorInfo> _byName;
    private int _disposed;

    private SafeTensorsFile(string path, MemoryMappedFile mapping, MemoryMappedViewAccessor view, byte* mapped, long dataStart,
        List<SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _mapping = mapping;
        _view = view;
        _base = mapped;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    public string Path { get; }

    /// <summary>The tensors in header order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    public IReadOnlyDictionary<string, string> Metadata { get; }

    public static SafeTensorsFile Open(string path) => Open(path, SafeTensorsLimits.Default);

    /// <summary>Maps and validates a file; any problem with its contents is a <see cref="SafeTensorsException"/>.</summary>
    public static SafeTensorsFile Open(string path, SafeTensorsLimits limits)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors files are read on little-endian hosts only");
        FileStream stream;
        long length;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 1);
            length = stream.Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new SafeTensorsException(path, $"cannot open: {e.Message}", null, null, e);
        }
        if (length < 8)
        {
            stream.Dispose();
            throw new SafeTensorsException(path, $"file is {length} bytes, shorter than the 8-byte header length", byteOffset: 0);
        }

        MemoryMappedFile? mapping = null;
        MemoryMappedViewAccessor? view = null;
        bool acquired = false;
        try
        {
            mapping = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = mapping.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* mapped = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref mapped);
            acquired = true;
            mapped += view.PointerOffset;

            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(mapped, 8));
            if (headerLength > (ulong)(length - 8))
                throw new SafeTensorsException(path, $"header length {headerLength} runs past the end of the file ({length - 8} bytes follow the length)", byteOffset: 0);
            if (headerLength > (ulong)limits.MaxHeaderBytes)
                throw new SafeTensorsException(path, $"header length {headerLength} exceeds the {limits.MaxHeaderBytes}-byte limit", byteOffset: 0);
            long dataStart = 8 + (long)headerLength;
            var (tensors, metadata) = SafeTensorsHeader.Parse(path, new ReadOnlySpan<byte>(mapped + 8, (int)headerLength), length - dataStart);
            return new SafeTensorsFile(path, mapping, view, mapped, dataStart, tensors, metadata);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Release(stream, mapping, view, acquired);
            throw new SafeTensorsException(path, $"cannot map: {e.Message}", null, null, e);
        }
        catch
        {
            Release(stream, mapping, view, acquired);
            throw;
        }
    }

    public bool Contains(string name)
    {
        ThrowIfDisposed();
        return _byName.ContainsKey(name);
    }

    public SafeTensorInfo Info(string name)
    {
        ThrowIfDisposed();
        return _byName.TryGetValue(name, out var info) ? info : throw new SafeTensorsException(Path, "no such tensor in this file", name);
    }

    /// <summary>The raw little-endian bytes of a tensor, inside the mapping: valid while this file is open.</summary>
    public ReadOnlySpan<byte> RawBytes(string name)
    {
        var info = Info(name);
        if (info.ByteLength > int.MaxValue)
            throw new SafeTensorsException(Path, $"{info.ByteLength} bytes are too many for one span", name, _dataStart + info.Begin);
        return new ReadOnlySpan<byte>(_base + _dataStart + info.Begin, (int)info.ByteLength);
    }

    /// <summary>
    /// A float tensor in its stored type (F32, F16 or BF16), pointing into the mapping: read-only and valid
    /// while this file is open (see the class remarks). Misaligned data is copied instead.
    /// </summary>
    public Tensor Load(string name)
    {
        var info = Info(name);
        if (info.DType is not (DType.F32 or DType.F16 or DType.BF16))
            throw new SafeTensorsException(Path, $"is {info.DType.SafeTensorsName()}, not a float type (F32, F16, BF16); read it with ReadIntegers", name);
        int count = ElementCount(info);
        long offset = _dataStart + info.Begin;
        bool aligned = (nuint)(_base + offset) % (nuint)info.DType.SizeOf() == 0;
        Tensor tensor;
        if (info.DType == DType.F32)
        {
            tensor = count > 0 && aligned
                ? Tensor.FromReadOnlyStorage(new MappedMemory<float>(this, (float*)(_base + offset), count).Memory, default, DType.F32, info.Shape)
                : Tensor.FromArray(MemoryMarshal.Cast<byte, float>(RawBytes(name)).ToArray(), info.Shape);
        }
        else
        {
            tensor = count > 0 && aligned
                ? Tensor.FromReadOnlyStorage(default, new MappedMemory<ushort>(this, (ushort*)(_base + offset), count).Memory, info.DType, info.Shape)
                : Tensor.FromHalfBits(MemoryMarshal.Cast<byte, ushort>(RawBytes(name)).ToArray(), info.DType, info.Shape);
        }
        tensor.Name = name;
        return tensor;
    }

    /// <summary>A float tensor widened to a new float32 array.</summary>
    public float[] ReadFloats(string name) => Load(name).ToArray();

    /// <summary>An integer or boolean tensor as a new array of 64-bit integers; booleans must be stored as 0 or 1.</summary>
    public long[] ReadIntegers(string name)
    {
        var info = Info(name);
        int count = ElementCount(info);
        var raw = RawBytes(name);
        var result = new long[count];
        switch (info.DType)
        {
            case DType.I64:
                MemoryMarshal.Cast<byte, long>(raw).CopyTo(result);
                break;
            case DType.I32:
                var ints = MemoryMarshal.Cast<byte, int>(raw);
                for (int i = 0; i < count; i++) result[i] = ints[i];
                break;
            case DType.I8:
                var sbytes = MemoryMarshal.Cast<byte, sbyte>(raw);
                for (int i = 0; i < count; i++) result[i] = sbytes[i];
                break;
            case DType.U8:
                for (int i = 0; i < count; i++) result[i] = raw[i];
                break;
            case DType.Bool:
                for (int i = 0; i < count; i++)
                {
                    if (raw[i] > 1)
                        throw new SafeTensorsException(Path, $"boolean element {i} is stored as {raw[i]}, not 0 or 1", name, _dataStart + info.Begin + i);
                    result[i] = raw[i];
                }
                break;
            default:
                throw new SafeTensorsException(Path, $"is {info.DType.SafeTensorsName()}, not an integer or boolean type; read it with Load or ReadFloats", name);
        }
        return result;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _mapping.Dispose();
    }

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    private int ElementCount(SafeTensorInfo info) =>
        info.ElementCount <= int.MaxValue
            ? (int)info.ElementCount
            : throw new SafeTensorsException(Path, $"{info.ElementCount} elements are more than one tensor can hold ({int.MaxValue})", info.Name, _dataStart + info.Begin);

    private static void Release(FileStream stream, MemoryMappedFile? mapping, MemoryMappedViewAccessor? view, bool acquired)
    {
        if (acquired) view!.SafeMemoryMappedViewHandle.ReleasePointer();
        view?.Dispose();
        mapping?.Dispose();
        stream.Dispose();
    }
}
