using Batchwise.Engines;
using Batchwise.Onnx;
using Batchwise.Operators;

namespace Batchwise.Cuda.Tests.Operators;

/// <summary>Reads ONNX node tests' tensors (test_data_set_*/input_N.pb, output_N.pb).</summary>
internal static class NodeTestData
{
    /// <summary>
    /// A stored tensor as the model declares it: ONNX's generator writes bfloat16 values as uint16 (numpy has no
    /// bfloat16), so a uint16 tensor where the model declares bfloat16 is read as the same bits in bfloat16.
    /// </summary>
    public static Tensor Read(string path, ElementType declared)
    {
        var t = HostTensor.FromProto(global::Onnx.TensorProto.Parser.ParseFrom(File.ReadAllBytes(path))).ToTensor();
        return declared == ElementType.BFloat16 && t.ElementType == ElementType.UInt16 ? new Tensor(ElementType.BFloat16, t.Shape, t.Data) : t;
    }
}
