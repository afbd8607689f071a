using System.Buffers;

namespace Graft.Tensors.SafeTensors;

/// <summary>
/// Elements inside a memory-mapped file, handed out as <see cref="Memory{T}"/> without a copy. Every access
/// checks that the file is still open, so a tensor used after its file was disposed throws instead of faulting.
/// </summary>
internal sealed unsafe class MappedMemory<T>(SafeTensorsFile owner, T* pointer, int length) : MemoryManager<T>
    where T : unmanaged
{
    public override Span<T> GetSpan()
    {
        owner.ThrowIfDisposed();
        return new Span<T>(pointer, length);
    }

    public override MemoryHandle Pin(int elementIndex = 0)
    {
        owner.ThrowIfDisposed();
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)elementIndex, (uint)length, nameof(elementIndex));
        return new MemoryHandle(pointer + elementIndex);
    }

    public override void Unpin()
    {
    }

    protected override void Dispose(bool disposing)
    {
    }
}
