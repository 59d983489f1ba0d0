using System.Runtime.InteropServices;

namespace Batchwise.Cuda.Interop;

/// <summary>A native object owned through one pointer (a CUDA, cuDNN or cuBLASLt handle); subclasses say how to release it.</summary>
internal abstract class NativeHandle : SafeHandle
{
    /// <summary>Created empty, filled by the create call through <see cref="Set"/>.</summary>
    protected NativeHandle()
        : base(IntPtr.Zero, true)
    {
    }

    /// <summary>Owns a pointer a create call already returned.</summary>
    protected NativeHandle(IntPtr h)
        : base(IntPtr.Zero, true) => SetHandle(h);

    public IntPtr Handle => handle;

    public override bool IsInvalid => handle == IntPtr.Zero;

    internal void Set(IntPtr p) => SetHandle(p);
}
