using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Graft.Tensors.PyTorch;

/// <summary>The two layouts <c>torch.save</c> writes.</summary>
public enum PyTorchFormat
{
    /// <summary>PyTorch 1.6 and later: a zip archive (NAME/data.pkl, NAME/data/KEY per storage, uncompressed).</summary>
    Zip,

    /// <summary>
    /// Before 1.6, or <c>_use_new_zipfile_serialization=False</c>: five pickles (magic number, protocol version, system
    /// info, the object, the storage keys) followed by each storage as an int64 element count and its bytes.
    /// </summary>
    Legacy,
}

/// <summary>One tensor of a checkpoint: its dotted name (keys of nested dicts), type, shape and the view of its storage.</summary>
public sealed record TorchTensorInfo(string Name, TorchDType DType, int[] Shape, long[] Stride, long StorageOffset, TorchStorage Storage)
{
    public long ElementCount => Tensor.ShapeLength(Shape);

    /// <summary>Whether the elements are one run of the storage (row-major, no gaps).</summary>
    public bool IsContiguous
    {
        get
        {
            long expected = 1;
            for (int i = Shape.Length - 1; i >= 0; i--)
            {
                if (Shape[i] != 1 && Stride[i] != expected) return false;
                expected *= Shape[i];
            }
            return true;
        }
    }

    /// <summary>The Graft type this tensor is read as: F32, F16 or BF16 as stored (F64 narrowed to F32), integers as they are.</summary>
    public DType GraftDType => DType switch
    {
        TorchDType.Float32 or TorchDType.Float64 => Tensors.DType.F32,
        TorchDType.Float16 => Tensors.DType.F16,
        TorchDType.BFloat16 => Tensors.DType.BF16,
        TorchDType.Int64 => Tensors.DType.I64,
        TorchDType.Int32 => Tensors.DType.I32,
        TorchDType.Int8 => Tensors.DType.I8,
        TorchDType.UInt8 => Tensors.DType.U8,
        TorchDType.Bool => Tensors.DType.Bool,
        _ => Tensors.DType.I32,
    };

    public bool IsFloat => DType is TorchDType.Float32 or TorchDType.Float64 or TorchDType.Float16 or TorchDType.BFloat16;
}

/// <summary>
/// A PyTorch checkpoint (<c>.bin</c>, <c>.pth</c>, <c>.pt</c>) opened for reading without running anything in it.
/// </summary>
/// <remarks>
/// The object is rebuilt by <see cref="RestrictedUnpickler"/>: tensors, storages, (ordered) dicts, lists, tuples, numbers,
/// strings and bytes, nothing else; any other class is refused with its name and byte offset. Tensors are found in
/// nested dicts and lists and named by their keys joined with dots (a bare state dict gives its own names).
/// Storages are never read whole: <see cref="Load"/> reads one tensor's elements (a strided view made contiguous), so
/// memory stays at the size of the tensor being read however large the file. Only little-endian files are read.
/// </remarks>
public sealed class PyTorchCheckpointFile : IDisposable
{
    private const long MaxTensors = 1_000_000;
    private const int MaxDepth = 64;
    private static readonly BigInteger MagicNumber = BigInteger.Parse("119547037146038801333356");

    private readonly SafeFileHandle _file;
    private readonly Dictionary<string, TorchTensorInfo> _byName;

    private PyTorchCheckpointFile(string path, SafeFileHandle file, long length, PyTorchFormat format, object? root, List<TorchTensorInfo> tensors)
    {
        Path = path;
        _file = file;
        Length = length;
        Format = format;
        Root = root;
        Tensors = tensors;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    public string Path { get; }
    public long Length { get; }
    public PyTorchFormat Format { get; }

    /// <summary>The unpickled object: <see cref="PickleDict"/>, <see cref="PickleList"/>, tuples (object?[]), values and <see cref="TorchTensorRef"/>s.</summary>
    public object? Root { get; }

    /// <summary>Every tensor reachable from <see cref="Root"/>, in pickle order.</summary>
    public IReadOnlyList<TorchTensorInfo> Tensors { get; }

    /// <summary>Whether the first bytes of a file are those of a checkpoint this reader opens (zip or legacy pickle).</summary>
    public static bool LooksLikeCheckpoint(ReadOnlySpan<byte> head) => ZipDirectory.LooksLikeZip(head) || head.Length >= 2 && head[0] == 0x80 && head[1] <= 5;

    public static PyTorchCheckpointFile Open(string path)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("PyTorch checkpoints are read on little-endian hosts only");
        SafeFileHandle file;
        long length;
        try
        {
            file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
            length = RandomAccess.GetLength(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new PyTorchCheckpointException(path, $"cannot open: {e.Message}", inner: e);
        }
        try
        {
            var head = new byte[Math.Min(length, 512)];
            ZipDirectory.ReadExactly(file, head, 0, path);
            if (ZipDirectory.LooksLikeZip(head)) return OpenZip(path, file, length);
            if (head.Length >= 2 && head[0] == 0x80) return OpenLegacy(path, file, length);
            if (head.Length >= 262 && head.AsSpan(257, 5).SequenceEqual("ustar"u8))
                throw new PyTorchCheckpointException(path, "is a tar archive: PyTorch's tar checkpoints (before version 0.4) are not supported; load and re-save it with a recent PyTorch", byteOffset: 257);
            throw new PyTorchCheckpointException(path, "is neither a zip-format nor a legacy (pickle) PyTorch checkpoint", byteOffset: 0);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static PyTorchCheckpointFile OpenZip(string path, SafeFileHandle file, long length)
    {
        var entries = ZipDirectory.Read(file, length, path);
        var pickle = entries.Where(e => e.Name.EndsWith("/data.pkl", StringComparison.Ordinal) && e.Name.IndexOf('/') == e.Name.Length - 9).ToList();
        if (entries.Any(e => e.Name.EndsWith("/constants.pkl", StringComparison.Ordinal)) && entries.Any(e => e.Name.Contains("/code/", StringComparison.Ordinal)))
            throw new PyTorchCheckpointException(path, "is a TorchScript archive (torch.jit.save), which holds code; save the model's state_dict with torch.save instead");
        if (pickle.Count != 1)
            throw new PyTorchCheckpointException(path, pickle.Count == 0 ? "is a zip archive without a NAME/data.pkl member: not a torch.save checkpoint" : "has several data.pkl members");
        string prefix = pickle[0].Name[..^"data.pkl".Length];
        var byName = new Dictionary<string, ZipEntry>(StringComparer.Ordinal);
        foreach (var e in entries) byName.TryAdd(e.Name, e);
        if (byName.TryGetValue(prefix + "byteorder", out var order))
        {
            var text = new byte[Math.Min(order.Size, 16)];
            ZipDirectory.ReadExactly(file, text, order.DataOffset, path);
            if (!text.AsSpan().SequenceEqual("little"u8)) throw new PyTorchCheckpointException(path, "was written on a big-endian machine (byteorder is not 'little')", byteOffset: order.DataOffset);
        }
        var entry = pickle[0];
        if (entry.Method != 0) throw new PyTorchCheckpointException(path, $"{entry.Name} is compressed (method {entry.Method}); torch.save stores it uncompressed", byteOffset: entry.DataOffset);
        var storages = new Dictionary<string, TorchStorage>(StringComparer.Ordinal);
        object? Persistent(object?[] pid, long at)
        {
            var storage = StorageOf(pid, path, at, legacy: false);
            if (storages.TryGetValue(storage.Key, out var known)) return Same(known, storage, path, at);
            if (!byName.TryGetValue(prefix + "data/" + storage.Key, out var data))
                throw new PyTorchCheckpointException(path, $"storage '{storage.Key}' has no member {prefix}data/{storage.Key}", byteOffset: at);
            if (data.Method != 0) throw new PyTorchCheckpointException(path, $"storage member {data.Name} is compressed (method {data.Method})", byteOffset: data.DataOffset);
            storage.FileOffset = data.DataOffset;
            storage.AvailableBytes = data.Size;
            storages[storage.Key] = storage;
            return storage;
        }
        var root = RestrictedUnpickler.Load(new PickleInput(file, path, entry.DataOffset, entry.DataOffset + entry.Size), Persistent);
        return new PyTorchCheckpointFile(path, file, length, PyTorchFormat.Zip, root, Flatten(root, path));
    }

    private static PyTorchCheckpointFile OpenLegacy(string path, SafeFileHandle file, long length)
    {
        var input = new PickleInput(file, path, 0, length);
        static object? NoPersistent(object?[] pid, long at, string path) => throw new PyTorchCheckpointException(path, "a persistent id outside the object pickle", byteOffset: at);
        long at = input.Position;
        var magic = RestrictedUnpickler.Load(input, (pid, a) => NoPersistent(pid, a, path));
        if (!(magic is BigInteger m && m == MagicNumber))
            throw new PyTorchCheckpointException(path, "does not start with PyTorch's magic number: not a legacy torch.save checkpoint", byteOffset: at);
        at = input.Position;
        var protocol = RestrictedUnpickler.Load(input, (pid, a) => NoPersistent(pid, a, path));
        if (protocol is not 1001L) throw new PyTorchCheckpointException(path, $"legacy protocol version {RestrictedUnpickler.Describe(protocol)} is not 1001", byteOffset: at);
        at = input.Position;
        var info = RestrictedUnpickler.Load(input, (pid, a) => NoPersistent(pid, a, path));
        if (info is PickleDict sys && sys.FirstOrDefault(p => p.Key is "little_endian").Value is false)
            throw new PyTorchCheckpointException(path, "was written on a big-endian machine", byteOffset: at);
        var storages = new Dictionary<string, TorchStorage>(StringComparer.Ordinal);
        object? Persistent(object?[] pid, long a)
        {
            var storage = StorageOf(pid, path, a, legacy: true);
            if (storages.TryGetValue(storage.Key, out var known)) return Same(known, storage, path, a);
            storages[storage.Key] = storage;
            return storage;
        }
        var root = RestrictedUnpickler.Load(input, Persistent);
        at = input.Position;
        var keys = RestrictedUnpickler.Load(input, (pid, a) => NoPersistent(pid, a, path)) as PickleList
            ?? throw new PyTorchCheckpointException(path, "the storage key list after the object is missing", byteOffset: at);
        long offset = input.Position;
        var count = new byte[8];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var k in keys)
        {
            if (k is not string key || !storages.TryGetValue(key, out var storage) || !seen.Add(key))
                throw new PyTorchCheckpointException(path, $"storage key {RestrictedUnpickler.Describe(k)} '{k}' is not a storage the object uses, or is listed twice", byteOffset: offset);
            if (length - offset < 8) throw new PyTorchCheckpointException(path, $"the file ends before storage '{key}'", byteOffset: offset);
            ZipDirectory.ReadExactly(file, count, offset, path);
            long elements = BinaryPrimitives.ReadInt64LittleEndian(count);
            long size = ElementSize(storage.DType);
            if (elements < 0 || elements > (length - offset - 8) / size)
                throw new PyTorchCheckpointException(path, $"storage '{key}' claims {elements} elements, more than the file holds", byteOffset: offset);
            storage.FileOffset = offset + 8;
            storage.AvailableBytes = elements * size;
            offset += 8 + elements * size;
        }
        foreach (var (key, storage) in storages)
            if (storage.FileOffset < 0) throw new PyTorchCheckpointException(path, $"storage '{key}' is used but its data is not in the file", byteOffset: offset);
        return new PyTorchCheckpointFile(path, file, length, PyTorchFormat.Legacy, root, Flatten(root, path));
    }

    private static TorchStorage StorageOf(object?[] pid, string path, long at, bool legacy)
    {
        if (pid.Length < 5 || pid[0] is not "storage")
            throw new PyTorchCheckpointException(path, $"persistent id ({string.Join(", ", pid.Select(RestrictedUnpickler.Describe))}) is not a storage (only storages are loaded; 'module' source records are refused)", byteOffset: at);
        if (!RestrictedUnpickler.TryStorageType(pid[1], out var dtype))
            throw new PyTorchCheckpointException(path, $"storage type {RestrictedUnpickler.Describe(pid[1])} is not one this reader knows", byteOffset: at);
        if (pid[2] is not string key || pid[3] is not string location || pid[4] is not long numel || numel < 0)
            throw new PyTorchCheckpointException(path, "a storage id must be ('storage', type, key, location, element count)", byteOffset: at);
        if (legacy && pid.Length > 5 && pid[5] is not null)
            throw new PyTorchCheckpointException(path, $"storage '{key}' is a view of another storage (PyTorch 0.3 layout), which is not supported", byteOffset: at);
        return new TorchStorage(key, dtype, numel, location);
    }

    private static TorchStorage Same(TorchStorage known, TorchStorage again, string path, long at) =>
        known.DType == again.DType && known.ElementCount == again.ElementCount ? known
            : throw new PyTorchCheckpointException(path, $"storage '{again.Key}' is described twice, differently", byteOffset: at);

    public static long ElementSize(TorchDType dtype) => dtype switch
    {
        TorchDType.Float64 or TorchDType.Int64 => 8,
        TorchDType.Float32 or TorchDType.Int32 => 4,
        TorchDType.Float16 or TorchDType.BFloat16 or TorchDType.Int16 => 2,
        _ => 1,
    };

    /// <summary>Every tensor under <paramref name="root"/>, named by the dict keys and list indices on its path, checked against its storage.</summary>
    private static List<TorchTensorInfo> Flatten(object? root, string path)
    {
        var tensors = new List<TorchTensorInfo>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        long visited = 0;
        void Visit(object? value, string name, int depth)
        {
            if (++visited > 10 * MaxTensors) throw new PyTorchCheckpointException(path, "the object is too deeply shared to list its tensors");
            if (depth > MaxDepth) throw new PyTorchCheckpointException(path, $"containers nest deeper than {MaxDepth} levels at '{name}'");
            string Child(string key) => name.Length == 0 ? key : name + "." + key;
            switch (value)
            {
                case TorchTensorRef tensor:
                    if (tensors.Count >= MaxTensors) throw new PyTorchCheckpointException(path, $"more than {MaxTensors} tensors");
                    string tensorName = name.Length == 0 ? "tensor" : name;
                    if (!names.Add(tensorName)) throw new PyTorchCheckpointException(path, "two tensors have this name", tensorName);
                    tensors.Add(Check(tensor, tensorName, path));
                    break;
                case PickleDict dict:
                    foreach (var (key, item) in dict)
                        if (Holds(item)) Visit(item, Child(key switch { string s => s, long n => n.ToString(System.Globalization.CultureInfo.InvariantCulture), _ => RestrictedUnpickler.Describe(key) }), depth + 1);
                    break;
                case PickleList list:
                    for (int i = 0; i < list.Count; i++) if (Holds(list[i])) Visit(list[i], Child(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), depth + 1);
                    break;
                case object?[] tuple:
                    for (int i = 0; i < tuple.Length; i++) if (Holds(tuple[i])) Visit(tuple[i], Child(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), depth + 1);
                    break;
            }
        }
        static bool Holds(object? v) => v is TorchTensorRef or PickleDict or PickleList or object?[];
        Visit(root, "", 0);
        return tensors;
    }

    private static TorchTensorInfo Check(TorchTensorRef t, string name, string path)
    {
        var shape = new int[t.Shape.Length];
        long count = 1, last = 0;
        for (int i = 0; i < shape.Length; i++)
        {
            if (t.Shape[i] > int.MaxValue) throw new PyTorchCheckpointException(path, $"dimension {i} is {t.Shape[i]}, too large", name);
            shape[i] = (int)t.Shape[i];
            count = t.Shape[i] == 0 ? 0 : count <= long.MaxValue / Math.Max(1, t.Shape[i]) ? count * t.Shape[i] : throw new PyTorchCheckpointException(path, "too many elements", name);
            if (t.Shape[i] > 0 && t.Stride[i] > 0)
            {
                if (t.Stride[i] > long.MaxValue / t.Shape[i]) throw new PyTorchCheckpointException(path, $"stride {t.Stride[i]} is too large", name);
                last += (t.Shape[i] - 1) * t.Stride[i];
                if (last < 0) throw new PyTorchCheckpointException(path, "strides overflow", name);
            }
        }
        if (count > int.MaxValue) throw new PyTorchCheckpointException(path, $"{count} elements are more than one tensor can hold ({int.MaxValue})", name);
        var s = t.Storage;
        long size = ElementSize(s.DType);
        if (count > 0 && (t.StorageOffset > s.ElementCount - 1 - last || s.ElementCount - 1 - last < 0))
            throw new PyTorchCheckpointException(path, $"its view (offset {t.StorageOffset}, size [{string.Join(", ", t.Shape)}], stride [{string.Join(", ", t.Stride)}]) reaches past its storage '{s.Key}' of {s.ElementCount} elements", name);
        if (s.AvailableBytes < s.ElementCount * size)
            throw new PyTorchCheckpointException(path, $"storage '{s.Key}' needs {s.ElementCount * size} bytes but the file holds {s.AvailableBytes}", name, s.FileOffset);
        return new TorchTensorInfo(name, s.DType, shape, t.Stride, t.StorageOffset, s);
    }

    public bool Contains(string name) => _byName.ContainsKey(name);

    public TorchTensorInfo Info(string name) =>
        _byName.TryGetValue(name, out var info) ? info : throw new PyTorchCheckpointException(Path, "no such tensor in this checkpoint", name);

    /// <summary>
    /// A float tensor in its stored type (F32, F16 or BF16; F64 is narrowed to F32), contiguous, in new memory of its own:
    /// only this tensor's bytes are read.
    /// </summary>
    public Tensor Load(string name)
    {
        var info = Info(name);
        if (!info.IsFloat) throw new PyTorchCheckpointException(Path, $"is {info.DType}, not a float type; read it with ReadIntegers", name);
        Tensor tensor;
        switch (info.DType)
        {
            case TorchDType.Float32:
            {
                // Read straight into the tensor's own array: one copy of the elements in memory, not two.
                var floats = new float[info.ElementCount];
                ReadInto(info, MemoryMarshal.AsBytes(floats.AsSpan()));
                tensor = Tensor.FromArray(floats, info.Shape);
                break;
            }
            case TorchDType.Float64:
            {
                var doubles = MemoryMarshal.Cast<byte, double>(ReadContiguous(info));
                var floats = new float[doubles.Length];
                for (int i = 0; i < floats.Length; i++) floats[i] = (float)doubles[i];
                tensor = Tensor.FromArray(floats, info.Shape);
                break;
            }
            default:
            {
                var bits = new ushort[info.ElementCount];
                ReadInto(info, MemoryMarshal.AsBytes(bits.AsSpan()));
                tensor = Tensor.FromHalfBits(bits, info.GraftDType, info.Shape);
                break;
            }
        }
        tensor.Name = name;
        return tensor;
    }

    /// <summary>An integer or boolean tensor as 64-bit integers (booleans must be stored as 0 or 1).</summary>
    public long[] ReadIntegers(string name)
    {
        var info = Info(name);
        var raw = ReadContiguous(info).AsSpan();
        var result = new long[info.ElementCount];
        switch (info.DType)
        {
            case TorchDType.Int64: MemoryMarshal.Cast<byte, long>(raw).CopyTo(result); break;
            case TorchDType.Int32: { var v = MemoryMarshal.Cast<byte, int>(raw); for (int i = 0; i < result.Length; i++) result[i] = v[i]; break; }
            case TorchDType.Int16: { var v = MemoryMarshal.Cast<byte, short>(raw); for (int i = 0; i < result.Length; i++) result[i] = v[i]; break; }
            case TorchDType.Int8: for (int i = 0; i < result.Length; i++) result[i] = (sbyte)raw[i]; break;
            case TorchDType.UInt8: for (int i = 0; i < result.Length; i++) result[i] = raw[i]; break;
            case TorchDType.Bool:
                for (int i = 0; i < result.Length; i++)
                    result[i] = raw[i] <= 1 ? raw[i] : throw new PyTorchCheckpointException(Path, $"boolean element {i} is stored as {raw[i]}, not 0 or 1", name);
                break;
            default: throw new PyTorchCheckpointException(Path, $"is {info.DType}, not an integer or boolean type; read it with Load", name);
        }
        return result;
    }

    /// <summary>The tensor's elements, row-major and contiguous, as raw little-endian bytes of its stored type.</summary>
    public byte[] ReadContiguous(TorchTensorInfo info)
    {
        ArgumentNullException.ThrowIfNull(info);
        long bytes = ElementSize(info.DType) * info.ElementCount;
        if (bytes > Array.MaxLength) throw new PyTorchCheckpointException(Path, $"{bytes} bytes are too many for one array", info.Name);
        var result = new byte[bytes];
        ReadInto(info, result);
        return result;
    }

    /// <summary>The tensor's elements, row-major and contiguous, written into <paramref name="result"/> (exactly its byte length).</summary>
    public void ReadInto(TorchTensorInfo info, Span<byte> result)
    {
        ArgumentNullException.ThrowIfNull(info);
        ObjectDisposedException.ThrowIf(_file.IsClosed, this);
        long size = ElementSize(info.DType), count = info.ElementCount;
        if (result.Length != count * size) throw new ArgumentException($"{result.Length} bytes given for {count * size}", nameof(result));
        if (count == 0) return;
        long start = info.Storage.FileOffset + info.StorageOffset * size;
        if (info.IsContiguous)
        {
            ZipDirectory.ReadExactly(_file, result, start, Path);
            return;
        }
        // A strided view: read the span of storage it covers in pieces and gather its elements row by row.
        int rank = info.Shape.Length;
        int inner = rank - 1;
        var index = new long[rank];
        long innerStride = info.Stride[inner] * size;
        int innerCount = info.Shape[inner];
        long rowSpan = (innerCount - 1) * innerStride + size;
        bool byElement = rowSpan > 1 << 24; // a sparse view: read its elements one by one rather than the storage between them
        var row = new byte[byElement ? size : rowSpan];
        for (long written = 0; written < result.Length;)
        {
            long offset = start;
            for (int d = 0; d < inner; d++) offset += index[d] * info.Stride[d] * size;
            if (byElement)
                for (int j = 0; j < innerCount; j++) ZipDirectory.ReadExactly(_file, result.Slice((int)written + j * (int)size, (int)size), offset + j * innerStride, Path);
            else
            {
                ZipDirectory.ReadExactly(_file, row, offset, Path);
                for (int j = 0; j < innerCount; j++) row.AsSpan((int)(j * innerStride), (int)size).CopyTo(result.Slice((int)written + j * (int)size));
            }
            written += innerCount * size;
            for (int d = inner - 1; d >= 0; d--)
            {
                if (++index[d] < info.Shape[d]) break;
                index[d] = 0;
            }
        }
    }

    public void Dispose() => _file.Dispose();
}
