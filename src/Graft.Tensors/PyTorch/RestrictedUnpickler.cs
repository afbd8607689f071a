using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Graft.Tensors.PyTorch;

/// <summary>A pickled list (Python list).</summary>
public sealed class PickleList : List<object?>;

/// <summary>A pickled dict or OrderedDict, in insertion order (keys are strings or integers in checkpoints).</summary>
public sealed class PickleDict : List<KeyValuePair<object?, object?>>;

/// <summary>A class or function the unpickler knows by name; only the allowed ones are ever created.</summary>
internal sealed record PickleGlobal(string Module, string Name)
{
    public string FullName => Module + "." + Name;
}

/// <summary>A storage as a checkpoint describes it: its key, element type, element count and where its bytes are.</summary>
public sealed record TorchStorage(string Key, TorchDType DType, long ElementCount, string Location)
{
    /// <summary>Offset of the first element in the file; set once the file's layout is known.</summary>
    public long FileOffset { get; internal set; } = -1;

    /// <summary>Bytes available for this storage in the file.</summary>
    public long AvailableBytes { get; internal set; } = -1;
}

/// <summary>A tensor as <c>torch._utils._rebuild_tensor_v2</c> describes it: a strided view of a storage.</summary>
public sealed record TorchTensorRef(TorchStorage Storage, long StorageOffset, long[] Shape, long[] Stride);

/// <summary>The element types of PyTorch storages.</summary>
public enum TorchDType
{
    Float32,
    Float64,
    Float16,
    BFloat16,
    Int64,
    Int32,
    Int16,
    Int8,
    UInt8,
    Bool,
}

/// <summary>
/// A pickle (protocols 0-5) read by a machine that can only build data: numbers, strings, bytes, lists, tuples, dicts,
/// OrderedDicts, and PyTorch's tensors and storages. The handful of globals a state dict needs are recognised by name
/// and interpreted here (none is imported or called); any other global, and any opcode that would run code
/// (INST, OBJ, EXT*), is refused with its name and byte offset. Persistent ids are handed to the caller's resolver.
/// </summary>
internal sealed class RestrictedUnpickler
{
    private const int MaxStack = 1 << 20;
    private const int MaxMemo = 1 << 24;
    private static readonly object Mark = new();
    private static readonly object OrderedDictMarker = new();

    private static readonly Dictionary<string, TorchDType> StorageTypes = new(StringComparer.Ordinal)
    {
        ["torch.FloatStorage"] = TorchDType.Float32,
        ["torch.DoubleStorage"] = TorchDType.Float64,
        ["torch.HalfStorage"] = TorchDType.Float16,
        ["torch.BFloat16Storage"] = TorchDType.BFloat16,
        ["torch.LongStorage"] = TorchDType.Int64,
        ["torch.IntStorage"] = TorchDType.Int32,
        ["torch.ShortStorage"] = TorchDType.Int16,
        ["torch.CharStorage"] = TorchDType.Int8,
        ["torch.ByteStorage"] = TorchDType.UInt8,
        ["torch.BoolStorage"] = TorchDType.Bool,
        ["torch.UntypedStorage"] = TorchDType.UInt8,
    };

    private static readonly HashSet<string> Allowed = new(StringComparer.Ordinal)
    {
        "collections.OrderedDict", "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state", "torch._tensor._rebuild_from_type_v2", "torch.nn.parameter.Parameter", "torch.Tensor",
        "_codecs.encode", "torch.Size", "builtins.set", "builtins.frozenset", "__builtin__.set",
    };

    private readonly PickleInput _in;
    private readonly Func<object?[], long, object?> _persistentLoad;
    private readonly List<object?> _stack = [];
    private readonly Dictionary<long, object?> _memo = [];

    private RestrictedUnpickler(PickleInput input, Func<object?[], long, object?> persistentLoad)
    {
        _in = input;
        _persistentLoad = persistentLoad;
    }

    /// <summary>Reads one pickle from <paramref name="input"/> (up to and including STOP) and returns its value.</summary>
    public static object? Load(PickleInput input, Func<object?[], long, object?> persistentLoad) => new RestrictedUnpickler(input, persistentLoad).Run();

    public static bool TryStorageType(object? value, out TorchDType dtype)
    {
        dtype = default;
        return value is PickleGlobal g && StorageTypes.TryGetValue(g.FullName, out dtype);
    }

    private PyTorchCheckpointException Error(string problem, long offset) => new(_in.Path, problem, byteOffset: offset);

    private object? Run()
    {
        while (true)
        {
            long at = _in.Position;
            byte op = _in.Byte();
            switch (op)
            {
                case 0x80: // PROTO
                    int protocol = _in.Byte();
                    if (protocol > 5) throw Error($"pickle protocol {protocol} is newer than 5", at);
                    break;
                case 0x95: _in.Skip(8); break; // FRAME: frames only group opcodes
                case 0x2e: // STOP
                    if (_stack.Count != 1) throw Error($"the pickle stops with {_stack.Count} values on its stack, not 1", at);
                    return Pop(at);
                case 0x28: Push(Mark, at); break; // MARK
                case 0x4e: Push(null, at); break; // NONE
                case 0x88: Push(true, at); break; // NEWTRUE
                case 0x89: Push(false, at); break; // NEWFALSE
                case 0x4a: Push((long)BinaryPrimitives.ReadInt32LittleEndian(_in.Bytes(4)), at); break; // BININT
                case 0x4b: Push((long)_in.Byte(), at); break; // BININT1
                case 0x4d: Push((long)BinaryPrimitives.ReadUInt16LittleEndian(_in.Bytes(2)), at); break; // BININT2
                case 0x8a: Push(Long(_in.Bytes(_in.Byte())), at); break; // LONG1
                case 0x8b: Push(Long(_in.Bytes(Length(BinaryPrimitives.ReadInt32LittleEndian(_in.Bytes(4)), at))), at); break; // LONG4
                case 0x47: Push(BinaryPrimitives.ReadDoubleBigEndian(_in.Bytes(8)), at); break; // BINFLOAT
                case 0x49: Push(IntText(_in.Line(), at), at); break; // INT
                case 0x4c: Push(IntText(_in.Line().TrimEnd('L'), at), at); break; // LONG
                case 0x46: Push(FloatText(_in.Line(), at), at); break; // FLOAT
                case 0x58: Push(Utf8(_in.Bytes(Length(BinaryPrimitives.ReadUInt32LittleEndian(_in.Bytes(4)), at)), at), at); break; // BINUNICODE
                case 0x8c: Push(Utf8(_in.Bytes(_in.Byte()), at), at); break; // SHORT_BINUNICODE
                case 0x8d: Push(Utf8(_in.Bytes(Length(BinaryPrimitives.ReadUInt64LittleEndian(_in.Bytes(8)), at)), at), at); break; // BINUNICODE8
                case 0x54: Push(Encoding.Latin1.GetString(_in.Bytes(Length(BinaryPrimitives.ReadInt32LittleEndian(_in.Bytes(4)), at))), at); break; // BINSTRING
                case 0x55: Push(Encoding.Latin1.GetString(_in.Bytes(_in.Byte())), at); break; // SHORT_BINSTRING
                case 0x42: Push(_in.Bytes(Length(BinaryPrimitives.ReadUInt32LittleEndian(_in.Bytes(4)), at)).ToArray(), at); break; // BINBYTES
                case 0x43: Push(_in.Bytes(_in.Byte()).ToArray(), at); break; // SHORT_BINBYTES
                case 0x8e: Push(_in.Bytes(Length(BinaryPrimitives.ReadUInt64LittleEndian(_in.Bytes(8)), at)).ToArray(), at); break; // BINBYTES8
                case 0x53: Push(StringText(_in.Line(), at), at); break; // STRING
                case 0x56: Push(_in.Line(), at); break; // UNICODE (raw-unicode-escape; ASCII in practice)
                case 0x5d: Push(new PickleList(), at); break; // EMPTY_LIST
                case 0x7d: Push(new PickleDict(), at); break; // EMPTY_DICT
                case 0x29: Push(Array.Empty<object?>(), at); break; // EMPTY_TUPLE
                case 0x8f: Push(new PickleList(), at); break; // EMPTY_SET (a set of values is kept as a list)
                case 0x6c: { var items = PopToMark(at); var list = new PickleList(); list.AddRange(items); Push(list, at); break; } // LIST
                case 0x64: Push(DictOf(PopToMark(at), at), at); break; // DICT
                case 0x74: Push(PopToMark(at), at); break; // TUPLE
                case 0x85: { var a = Pop(at); Push(new[] { a }, at); break; } // TUPLE1
                case 0x86: { var b = Pop(at); var a = Pop(at); Push(new[] { a, b }, at); break; } // TUPLE2
                case 0x87: { var c = Pop(at); var b = Pop(at); var a = Pop(at); Push(new[] { a, b, c }, at); break; } // TUPLE3
                case 0x91: { var items = PopToMark(at); var set = new PickleList(); set.AddRange(items); Push(set, at); break; } // FROZENSET
                case 0x61: { var v = Pop(at); ListAt(Peek(at), at).Add(v); break; } // APPEND
                case 0x65: { var items = PopToMark(at); ListAt(Peek(at), at).AddRange(items); break; } // APPENDS
                case 0x90: { var items = PopToMark(at); ListAt(Peek(at), at).AddRange(items); break; } // ADDITEMS
                case 0x73: { var v = Pop(at); var k = Pop(at); DictAt(Peek(at), at).Add(new(k, v)); break; } // SETITEM
                case 0x75: { var items = PopToMark(at); var d = DictAt(Peek(at), at); d.AddRange(DictOf(items, at)); break; } // SETITEMS
                case 0x70: _memo[MemoKey(IntText(_in.Line(), at), at)] = Peek(at); break; // PUT
                case 0x71: _memo[MemoKey(_in.Byte(), at)] = Peek(at); break; // BINPUT
                case 0x72: _memo[MemoKey(BinaryPrimitives.ReadUInt32LittleEndian(_in.Bytes(4)), at)] = Peek(at); break; // LONG_BINPUT
                case 0x94: _memo[MemoKey(_memo.Count, at)] = Peek(at); break; // MEMOIZE
                case 0x67: Push(Get(IntText(_in.Line(), at), at), at); break; // GET
                case 0x68: Push(Get(_in.Byte(), at), at); break; // BINGET
                case 0x6a: Push(Get(BinaryPrimitives.ReadUInt32LittleEndian(_in.Bytes(4)), at), at); break; // LONG_BINGET
                case 0x30: Pop(at); break; // POP
                case 0x31: PopToMark(at); break; // POP_MARK
                case 0x32: Push(Peek(at), at); break; // DUP
                case 0x63: // GLOBAL
                {
                    string module = _in.Line(), name = _in.Line();
                    Push(Global(module, name, at), at);
                    break;
                }
                case 0x93: // STACK_GLOBAL
                {
                    var name = Pop(at) as string ?? throw Error("STACK_GLOBAL needs two strings", at);
                    var module = Pop(at) as string ?? throw Error("STACK_GLOBAL needs two strings", at);
                    Push(Global(module, name, at), at);
                    break;
                }
                case 0x52: // REDUCE
                {
                    var args = Pop(at) as object?[] ?? throw Error("REDUCE needs a tuple of arguments", at);
                    var callable = Pop(at);
                    Push(Reduce(callable, args, at), at);
                    break;
                }
                case 0x81: // NEWOBJ
                {
                    var args = Pop(at) as object?[] ?? throw Error("NEWOBJ needs a tuple of arguments", at);
                    Push(Reduce(Pop(at), args, at), at);
                    break;
                }
                case 0x92: // NEWOBJ_EX
                {
                    Pop(at);
                    var args = Pop(at) as object?[] ?? throw Error("NEWOBJ_EX needs a tuple of arguments", at);
                    Push(Reduce(Pop(at), args, at), at);
                    break;
                }
                case 0x62: // BUILD
                {
                    var state = Pop(at);
                    var target = Peek(at);
                    // An OrderedDict's attributes (a state dict's _metadata) and a tensor's state carry nothing a checkpoint's values need.
                    if (target is not (PickleDict or TorchTensorRef))
                        throw Error($"BUILD on a {Describe(target)} is not allowed (only dicts and tensors take state)", at);
                    _ = state;
                    break;
                }
                case 0x51: // BINPERSID
                {
                    var pid = Pop(at) as object?[] ?? throw Error("a persistent id must be a tuple", at);
                    Push(_persistentLoad(pid, at), at);
                    break;
                }
                case 0x50: throw Error("text persistent ids (PERSID) are not used by PyTorch and are refused", at);
                case 0x69: throw Error($"INST would create an instance of {_in.Line()}.{_in.Line()}: refused", at);
                case 0x6f: throw Error("OBJ would create an object from a class on the stack: refused", at);
                case 0x82 or 0x83 or 0x84: throw Error("extension-registry globals (EXT1/2/4) are refused", at);
                case 0x96 or 0x97 or 0x98: throw Error("out-of-band buffers (protocol 5) are refused", at);
                default: throw Error($"unknown pickle opcode 0x{op:x2}", at);
            }
        }
    }

    private object Global(string module, string name, long at)
    {
        string full = module + "." + name;
        if (StorageTypes.ContainsKey(full) || Allowed.Contains(full)) return new PickleGlobal(module, name);
        throw Error($"refusing global '{full}': only tensors, storages, OrderedDicts and plain containers are rebuilt, and nothing is ever run", at);
    }

    private object? Reduce(object? callable, object?[] args, long at)
    {
        if (callable is not PickleGlobal g) throw Error($"REDUCE on a {Describe(callable)}, which is not a callable this reader knows", at);
        switch (g.FullName)
        {
            case "collections.OrderedDict":
                if (args.Length == 0) return new PickleDict();
                if (args.Length == 1 && args[0] is PickleList pairs) return DictOf(pairs.SelectMany(p => p is object?[] { Length: 2 } kv ? kv : throw Error("OrderedDict items must be pairs", at)).ToArray(), at);
                throw Error("OrderedDict takes no arguments or a list of pairs", at);
            case "torch._utils._rebuild_tensor":
            case "torch._utils._rebuild_tensor_v2":
                if (args.Length < 4) throw Error($"{g.Name} needs at least (storage, offset, size, stride)", at);
                return Tensor(args[0], args[1], args[2], args[3], at);
            case "torch._utils._rebuild_parameter":
            case "torch._utils._rebuild_parameter_with_state":
                return args.Length >= 1 && args[0] is TorchTensorRef parameter ? parameter : throw Error($"{g.Name} needs a tensor", at);
            case "torch._tensor._rebuild_from_type_v2":
                if (args.Length < 3 || args[1] is not PickleGlobal { FullName: "torch.nn.parameter.Parameter" or "torch.Tensor" })
                    throw Error("_rebuild_from_type_v2 is allowed for Parameter and Tensor only", at);
                if (args[0] is not PickleGlobal { FullName: "torch._utils._rebuild_tensor_v2" or "torch._utils._rebuild_tensor" } || args[2] is not object?[] inner)
                    throw Error("_rebuild_from_type_v2 must rebuild a tensor", at);
                return Reduce(args[0], inner, at);
            case "_codecs.encode":
                if (args.Length == 2 && args[0] is string text && args[1] is "latin1" or "latin-1") return Encoding.Latin1.GetBytes(text);
                throw Error("_codecs.encode is allowed only as (str, 'latin1'), how protocol 2 writes bytes", at);
            case "torch.Size":
                return args.Length == 0 ? Array.Empty<object?>() : args[0] as object?[] ?? throw Error("torch.Size takes a tuple", at);
            case "builtins.set" or "builtins.frozenset" or "__builtin__.set":
            {
                var set = new PickleList();
                if (args.Length == 1 && args[0] is PickleList items) set.AddRange(items);
                else if (args.Length != 0) throw Error("set takes a list", at);
                return set;
            }
            default:
                throw Error($"'{g.FullName}' cannot be called here", at);
        }
    }

    private TorchTensorRef Tensor(object? storage, object? offset, object? size, object? stride, long at)
    {
        if (storage is not TorchStorage s) throw Error($"a tensor's storage is a {Describe(storage)}, not a storage", at);
        if (offset is not long o || o < 0) throw Error("a tensor's storage offset must be a non-negative integer", at);
        long[] Dims(object? value, string what) => value is object?[] items
            ? items.Select(v => v is long n && n >= 0 ? n : throw Error($"a tensor's {what} holds {Describe(v)}, not a non-negative integer", at)).ToArray()
            : throw Error($"a tensor's {what} must be a tuple", at);
        var shape = Dims(size, "size");
        var strides = Dims(stride, "stride");
        if (shape.Length != strides.Length) throw Error($"a tensor's size has {shape.Length} dimensions but its stride {strides.Length}", at);
        return new TorchTensorRef(s, o, shape, strides);
    }

    private PickleDict DictOf(IReadOnlyList<object?> items, long at)
    {
        if (items.Count % 2 != 0) throw Error("a dict needs key-value pairs", at);
        var dict = new PickleDict();
        for (int i = 0; i < items.Count; i += 2) dict.Add(new(items[i], items[i + 1]));
        return dict;
    }

    private PickleList ListAt(object? value, long at) => value as PickleList ?? throw Error($"APPEND to a {Describe(value)}", at);

    private PickleDict DictAt(object? value, long at) => value as PickleDict ?? throw Error($"SETITEM on a {Describe(value)}", at);

    private void Push(object? value, long at)
    {
        if (_stack.Count >= MaxStack) throw Error($"the pickle stack grows past {MaxStack} values", at);
        _stack.Add(value);
    }

    private object? Pop(long at)
    {
        if (_stack.Count == 0 || _stack[^1] == Mark) throw Error("the pickle pops from an empty stack", at);
        var value = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return value;
    }

    private object? Peek(long at) => _stack.Count == 0 || _stack[^1] == Mark ? throw Error("the pickle reads an empty stack", at) : _stack[^1];

    private object?[] PopToMark(long at)
    {
        int mark = _stack.LastIndexOf(Mark);
        if (mark < 0) throw Error("the pickle has no MARK to pop to", at);
        var items = _stack.GetRange(mark + 1, _stack.Count - mark - 1).ToArray();
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    private long MemoKey(long key, long at) =>
        key < 0 || _memo.Count >= MaxMemo && !_memo.ContainsKey(key) ? throw Error($"memo key {key} is out of range", at) : key;

    private object? Get(long key, long at) => _memo.TryGetValue(key, out var value) ? value : throw Error($"the pickle reads memo {key}, which was never stored", at);

    private int Length(long length, long at) =>
        length < 0 || length > _in.Remaining ? throw Error($"a length of {length} runs past the end of the pickle", at) : (int)length;

    private int Length(ulong length, long at) => length > (ulong)_in.Remaining ? throw Error($"a length of {length} runs past the end of the pickle", at) : (int)length;

    private static object Long(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length == 0) return 0L;
        var value = new BigInteger(bytes, isUnsigned: false, isBigEndian: false);
        return value >= long.MinValue && value <= long.MaxValue ? (long)value : value;
    }

    private long IntText(string text, long at)
    {
        if (text == "01") return 1;
        if (text == "00") return 0;
        return long.TryParse(text, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long v) ? v : throw Error($"'{text}' is not an integer", at);
    }

    private double FloatText(string text, long at) =>
        double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v) ? v : throw Error($"'{text}' is not a float", at);

    private string StringText(string text, long at) =>
        text.Length >= 2 && (text[0] == '\'' || text[0] == '"') && text[^1] == text[0] ? text[1..^1] : throw Error("a STRING must be quoted", at);

    private string Utf8(ReadOnlySpan<byte> bytes, long at)
    {
        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw Error("a string is not valid UTF-8", at);
        }
    }

    public static string Describe(object? value) => value switch
    {
        null => "None",
        PickleGlobal g => g.FullName,
        PickleDict => "dict",
        PickleList => "list",
        object?[] => "tuple",
        TorchTensorRef => "tensor",
        TorchStorage => "storage",
        string => "str",
        byte[] => "bytes",
        long or BigInteger => "int",
        double => "float",
        bool => "bool",
        _ => value.GetType().Name,
    };
}

/// <summary>Bytes of a pickle inside a file, read through a buffer; positions are file offsets.</summary>
internal sealed class PickleInput(SafeFileHandle file, string path, long start, long end)
{
    private readonly byte[] _buffer = new byte[1 << 16];
    private long _bufferStart = start;
    private int _bufferLength;
    private int _at;

    public string Path { get; } = path;
    public long Position => _bufferStart + _at;
    public long Remaining => end - Position;

    public byte Byte() => Bytes(1)[0];

    public void Skip(int count) => Bytes(count);

    /// <summary>The next <paramref name="count"/> bytes (valid until the next read).</summary>
    public ReadOnlySpan<byte> Bytes(int count)
    {
        if (count < 0 || count > Remaining) throw new PyTorchCheckpointException(Path, $"the pickle ends inside a value ({count} bytes needed, {Remaining} left)", byteOffset: Position);
        if (_bufferLength - _at < count)
        {
            long position = Position;
            var buffer = count <= _buffer.Length ? _buffer : new byte[count];
            int want = (int)Math.Min(buffer.Length, end - position);
            ZipDirectory.ReadExactly(file, buffer.AsSpan(0, want), position, Path);
            if (!ReferenceEquals(buffer, _buffer))
            {
                _bufferStart = position + count;
                _bufferLength = 0;
                _at = 0;
                return buffer.AsSpan(0, count);
            }
            _bufferStart = position;
            _bufferLength = want;
            _at = 0;
        }
        var span = _buffer.AsSpan(_at, count);
        _at += count;
        return span;
    }

    /// <summary>A protocol-0 line without its newline (ASCII), at most 64 KiB.</summary>
    public string Line()
    {
        var text = new StringBuilder();
        while (true)
        {
            byte b = Byte();
            if (b == (byte)'\n') return text.ToString();
            if (text.Length >= 1 << 16) throw new PyTorchCheckpointException(Path, "a pickle text line is longer than 64 KiB", byteOffset: Position);
            text.Append((char)b);
        }
    }
}
