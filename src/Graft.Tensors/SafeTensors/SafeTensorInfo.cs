namespace Graft.Tensors.SafeTensors;

/// <summary>One entry of a safetensors header; offsets are relative to the start of the data section.</summary>
public sealed record SafeTensorInfo(string Name, DType DType, int[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
    public long ElementCount => Tensor.ShapeLength(Shape);
}
