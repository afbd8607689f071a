using System.Runtime.InteropServices;

namespace Graft.Tensors;

/// <summary>
/// A dense, row-major, contiguous tensor. Activations and gradients are float32; parameters may be
/// stored as F16 or BF16 (raw bits), which the kernels that use them read directly. Storage may be
/// managed memory or a memory-mapped region owned by whoever created the tensor (a checkpoint file).
/// </summary>
/// <remarks>
/// Shape legend used across the engine: B batch, T time (sequence), C channels, V vocabulary,
/// H heads, D head size, N rows, K inner dimension of a product.
/// </remarks>
public sealed class Tensor
{
    private readonly Memory<float> _f32;
    private readonly Memory<ushort> _half;
    private bool _trainable;

    private Tensor(int[] shape, DType dtype, Memory<float> f32, Memory<ushort> half, bool readOnly = false)
    {
        Shape = shape;
        DType = dtype;
        _f32 = f32;
        _half = half;
        IsReadOnly = readOnly;
        Length = checked((int)ShapeLength(shape));
    }

    /// <summary>
    /// True when the elements live in read-only memory (a memory-mapped checkpoint): writing through
    /// <see cref="Span"/> would fault, so such a tensor cannot be trained; copy it with <see cref="ToDType"/> first.
    /// </summary>
    public bool IsReadOnly { get; }

    /// <summary>Dimensions, outermost first. Do not modify.</summary>
    public int[] Shape { get; }

    public int Rank => Shape.Length;

    /// <summary>Number of elements.</summary>
    public int Length { get; }

    public DType DType { get; }

    /// <summary>Optional name, used in error messages and checkpoints.</summary>
    public string? Name { get; set; }

    /// <summary>The gradient accumulated by <see cref="Backward"/>; null until then, and always null for frozen tensors.</summary>
    public Tensor? Grad { get; internal set; }

    /// <summary>The operation that produced this tensor, when it was recorded for autograd.</summary>
    internal AutogradNode? GradFn { get; set; }

    /// <summary>
    /// True for a trainable leaf (a parameter) and for every recorded result that depends on one.
    /// Only float32 leaves can be trainable; frozen tensors (the base model) never get a gradient buffer.
    /// </summary>
    public bool RequiresGrad
    {
        get => _trainable || GradFn is not null;
        set
        {
            if (value && DType != DType.F32) throw new InvalidOperationException($"only F32 tensors can be trained; '{Name}' is {DType}");
            if (value && IsReadOnly) throw new InvalidOperationException($"'{Name}' is stored in read-only (memory-mapped) memory; train a copy made with ToDType(DType.F32)");
            if (GradFn is not null) throw new InvalidOperationException("RequiresGrad can only be set on a leaf tensor");
            _trainable = value;
        }
    }

    public bool IsLeaf => GradFn is null;

    /// <summary>The float32 elements. Throws for tensors stored in other types.</summary>
    public Span<float> Span => DType == DType.F32 ? _f32.Span : throw NotStoredAs(DType.F32);

    public Memory<float> Memory => DType == DType.F32 ? _f32 : throw NotStoredAs(DType.F32);

    /// <summary>The raw bits of an F16 or BF16 tensor.</summary>
    public ReadOnlySpan<ushort> HalfBits => DType.IsHalf() ? _half.Span : throw NotStoredAs(DType.BF16);

    public int Dim(int axis) => Shape[axis < 0 ? Shape.Length + axis : axis];

    public static long ShapeLength(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException($"negative dimension {d} in shape", nameof(shape));
            n *= d;
        }
        return n;
    }

    public static Tensor Zeros(params int[] shape) => new((int[])shape.Clone(), DType.F32, new float[ShapeLength(shape)], default);

    public static Tensor Full(float value, params int[] shape)
    {
        var t = Zeros(shape);
        t.Span.Fill(value);
        return t;
    }

    /// <summary>Wraps float32 memory without copying.</summary>
    public static Tensor FromMemory(Memory<float> data, params int[] shape)
    {
        if (ShapeLength(shape) != data.Length) throw new ArgumentException($"{data.Length} elements do not fill shape [{string.Join(", ", shape)}]");
        return new((int[])shape.Clone(), DType.F32, data, default);
    }

    public static Tensor FromArray(float[] data, params int[] shape) => FromMemory(data, shape);

    /// <summary>Wraps the raw bits of an F16 or BF16 tensor without copying.</summary>
    public static Tensor FromHalfBits(Memory<ushort> bits, DType dtype, params int[] shape)
    {
        if (!dtype.IsHalf()) throw new ArgumentException($"{dtype} is not a 16-bit float type", nameof(dtype));
        if (ShapeLength(shape) != bits.Length) throw new ArgumentException($"{bits.Length} elements do not fill shape [{string.Join(", ", shape)}]");
        return new((int[])shape.Clone(), dtype, default, bits);
    }

    /// <summary>Wraps read-only storage (a memory-mapped file) without copying; the tensor reports <see cref="IsReadOnly"/>.</summary>
    internal static Tensor FromReadOnlyStorage(Memory<float> f32, Memory<ushort> half, DType dtype, int[] shape) =>
        new((int[])shape.Clone(), dtype, f32, half, readOnly: true);

    /// <summary>A trainable float32 leaf.</summary>
    public static Tensor Parameter(float[] data, params int[] shape) => new((int[])shape.Clone(), DType.F32, data, default) { _trainable = true };

    /// <summary>A float32 copy (or widening) of the values, outside autograd.</summary>
    public float[] ToArray()
    {
        var result = new float[Length];
        CopyTo(result);
        return result;
    }

    /// <summary>Writes the values as float32, widening F16/BF16.</summary>
    public void CopyTo(Span<float> destination)
    {
        if (DType == DType.F32) _f32.Span.CopyTo(destination);
        else HalfConvert.ToFloat(DType, _half.Span, destination);
    }

    /// <summary>This tensor in float32: itself when already F32, else a widened copy (not recorded).</summary>
    public Tensor ToF32() => DType == DType.F32 ? this : new Tensor((int[])Shape.Clone(), DType.F32, ToArray(), default) { Name = Name };

    /// <summary>A copy stored as <paramref name="dtype"/> (F32, F16 or BF16), not recorded.</summary>
    public Tensor ToDType(DType dtype)
    {
        if (dtype == DType.F32) return DType == DType.F32 ? new Tensor((int[])Shape.Clone(), DType.F32, ToArray(), default) { Name = Name } : ToF32();
        var bits = new ushort[Length];
        var values = DType == DType.F32 ? _f32.Span : ToArray();
        if (dtype == DType.BF16) HalfConvert.FloatToBf16(values, bits);
        else if (dtype == DType.F16) HalfConvert.FloatToF16(values, bits);
        else throw new ArgumentException($"cannot store floats as {dtype}", nameof(dtype));
        return new Tensor((int[])Shape.Clone(), dtype, default, bits) { Name = Name };
    }

    /// <summary>The same memory under another shape with the same element count (a view; recorded for autograd).</summary>
    public Tensor Reshape(params int[] shape) => Ops.Reshape(this, shape);

    internal Tensor ViewAs(int[] shape) => new(shape, DType, _f32, _half, IsReadOnly);

    /// <summary>A leaf that shares this tensor's memory but not its graph.</summary>
    public Tensor Detach() => new((int[])Shape.Clone(), DType, _f32, _half, IsReadOnly) { Name = Name };

    /// <summary>Runs reverse-mode autograd from this scalar (or from this tensor with the given output gradient).</summary>
    public void Backward(Tensor? outputGradient = null) => Autograd.Backward(this, outputGradient);

    /// <summary>The gradient buffer to accumulate into, created (zeroed) on first use.</summary>
    internal Span<float> GradientBuffer()
    {
        Grad ??= Zeros(Shape);
        return Grad.Span;
    }

    public string ShapeString => "[" + string.Join(", ", Shape) + "]";

    public override string ToString() => $"Tensor{(Name is null ? "" : " " + Name)} {ShapeString} {DType}";

    private InvalidOperationException NotStoredAs(DType wanted) =>
        new($"tensor{(Name is null ? "" : " '" + Name + "'")} is stored as {DType}, not {(wanted == DType.F32 ? "F32" : "F16/BF16")}");

    internal static bool SameShape(ReadOnlySpan<int> a, ReadOnlySpan<int> b) => a.SequenceEqual(b);

    /// <summary>Copies a span into a new tensor; for tests and small inputs.</summary>
    public static Tensor FromSpan(ReadOnlySpan<float> values, params int[] shape)
    {
        var data = values.ToArray();
        return FromArray(data, shape);
    }

    internal static Span<float> AsSpan(Memory<float> memory) => memory.Span;

    internal static ReadOnlySpan<byte> AsBytes(Tensor t) =>
        t.DType == DType.F32 ? MemoryMarshal.AsBytes(t._f32.Span) : MemoryMarshal.AsBytes(t._half.Span);
}
