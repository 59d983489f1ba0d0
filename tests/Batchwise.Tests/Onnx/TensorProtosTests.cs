using Batchwise.Engines;
using Batchwise.Onnx;
using Google.Protobuf;
using OnnxProto = Onnx;

namespace Batchwise.Tests.Onnx;

public sealed class TensorProtosTests
{
    public static TheoryData<ElementType> AllTypes => new(
        ElementType.Float, ElementType.Float16, ElementType.BFloat16, ElementType.Double, ElementType.Int64, ElementType.Int32,
        ElementType.Int16, ElementType.Int8, ElementType.UInt8, ElementType.UInt16, ElementType.UInt32, ElementType.UInt64, ElementType.Bool);

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void Raw_data_round_trips_every_numeric_type(ElementType type)
    {
        var tensor = Sample(type);
        var proto = TensorProtos.FromTensor(tensor, "x");
        Assert.Equal("x", proto.Name);
        Assert.Equal((int)type, proto.DataType);
        var back = TensorProtos.ToTensor(OnnxProto.TensorProto.Parser.ParseFrom(proto.ToByteArray()));
        Assert.Equal(type, back.ElementType);
        Assert.Equal(tensor.Shape, back.Shape);
        Assert.Equal(tensor.Data, back.Data);
    }

    [Theory]
    [MemberData(nameof(AllTypes))]
    public void Typed_fields_round_trip_every_numeric_type(ElementType type)
    {
        var tensor = Sample(type);
        var proto = TensorProtos.FromTensorTyped(tensor);
        Assert.True(proto.RawData.IsEmpty);
        var back = TensorProtos.ToTensor(OnnxProto.TensorProto.Parser.ParseFrom(proto.ToByteArray()));
        Assert.Equal(type, back.ElementType);
        Assert.Equal(tensor.Data, back.Data);
        Assert.Equal(tensor.ToDoubles(), back.ToDoubles());
    }

    [Fact]
    public void Typed_fields_are_read_from_the_field_onnx_documents()
    {
        var f = new OnnxProto.TensorProto { DataType = (int)ElementType.Float, Dims = { 3 }, FloatData = { 1.5f, -2f, 3.25f } };
        Assert.Equal([1.5, -2, 3.25], TensorProtos.ToTensor(f).ToDoubles());

        var i8 = new OnnxProto.TensorProto { DataType = (int)ElementType.Int8, Dims = { 2 }, Int32Data = { -128, 127 } };
        Assert.Equal([-128.0, 127], TensorProtos.ToTensor(i8).ToDoubles());

        // float16 travels in int32_data as its bit pattern: 0x3C00 is 1.0, 0xC000 is -2.0.
        var h = new OnnxProto.TensorProto { DataType = (int)ElementType.Float16, Dims = { 2 }, Int32Data = { 0x3C00, 0xC000 } };
        Assert.Equal([1.0, -2.0], TensorProtos.ToTensor(h).ToDoubles());

        var b = new OnnxProto.TensorProto { DataType = (int)ElementType.Bool, Dims = { 3 }, Int32Data = { 1, 0, 1 } };
        Assert.Equal([1.0, 0, 1], TensorProtos.ToTensor(b).ToDoubles());

        var u32 = new OnnxProto.TensorProto { DataType = (int)ElementType.UInt32, Dims = { 1 }, Uint64Data = { 4_000_000_000 } };
        Assert.Equal([4_000_000_000.0], TensorProtos.ToTensor(u32).ToDoubles());

        var d = new OnnxProto.TensorProto { DataType = (int)ElementType.Double, Dims = { 1, 2 }, DoubleData = { 0.1, 0.2 } };
        var dt = TensorProtos.ToTensor(d);
        Assert.Equal([1L, 2], dt.Shape);
        Assert.Equal([0.1, 0.2], dt.ToDoubles());

        var scalar = new OnnxProto.TensorProto { DataType = (int)ElementType.Int64, Int64Data = { 42 } };
        var st = TensorProtos.ToTensor(scalar);
        Assert.Empty(st.Shape);
        Assert.Equal([42.0], st.ToDoubles());
    }

    [Fact]
    public void Too_few_values_is_a_clear_error()
    {
        var p = new OnnxProto.TensorProto { Name = "w", DataType = (int)ElementType.Float, Dims = { 2, 2 }, FloatData = { 1, 2, 3 } };
        var e = Assert.Throws<BatchwiseException>(() => TensorProtos.ToTensor(p));
        Assert.Contains("'w'", e.Message, StringComparison.Ordinal);
        Assert.Contains("needs 4 values, its float_data has 3", e.Message, StringComparison.Ordinal);

        var raw = new OnnxProto.TensorProto { DataType = (int)ElementType.Int64, Dims = { 2 }, RawData = ByteString.CopyFrom(new byte[12]) };
        Assert.Contains("needs 16 bytes of raw_data, has 12", Assert.Throws<BatchwiseException>(() => TensorProtos.ToTensor(raw)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void String_and_external_tensors_are_refused_with_their_reason()
    {
        var s = new OnnxProto.TensorProto { Name = "s", DataType = (int)OnnxProto.TensorProto.Types.DataType.String, Dims = { 1 } };
        Assert.Contains("STRING", Assert.Throws<BatchwiseException>(() => TensorProtos.ToTensor(s)).Message, StringComparison.Ordinal);

        var x = new OnnxProto.TensorProto { Name = "x", DataType = (int)ElementType.Float, Dims = { 1 }, DataLocation = OnnxProto.TensorProto.Types.DataLocation.External };
        Assert.Contains("external", Assert.Throws<BatchwiseException>(() => TensorProtos.ToTensor(x)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Reading_a_file_that_is_not_a_tensor_proto_names_the_file()
    {
        var path = Path.Combine(Path.GetTempPath(), $"bw-{Guid.NewGuid():N}.pb");
        File.WriteAllBytes(path, [0xFF, 0xFF, 0xFF]);
        try
        {
            Assert.Contains(path, Assert.Throws<BatchwiseException>(() => TensorProtos.ReadFile(path)).Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static Tensor Sample(ElementType type)
    {
        var t = Tensor.Zeros(type, [2, 3]);
        var values = new[] { 0.0, 1, -2, 3.5, 100, -7 };
        for (var i = 0; i < 6; i++)
        {
            var v = values[i];
            switch (type)
            {
                case ElementType.Float: t.AsSpan<float>()[i] = (float)v; break;
                case ElementType.Float16: t.AsSpan<Half>()[i] = (Half)v; break;
                case ElementType.BFloat16: t.AsSpan<ushort>()[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)v) >> 16); break;
                case ElementType.Double: t.AsSpan<double>()[i] = v; break;
                case ElementType.Int64: t.AsSpan<long>()[i] = (long)v; break;
                case ElementType.Int32: t.AsSpan<int>()[i] = (int)v; break;
                case ElementType.Int16: t.AsSpan<short>()[i] = (short)v; break;
                case ElementType.Int8: t.AsSpan<sbyte>()[i] = (sbyte)v; break;
                case ElementType.UInt8: t.Data[i] = (byte)Math.Abs(v); break;
                case ElementType.UInt16: t.AsSpan<ushort>()[i] = (ushort)Math.Abs(v); break;
                case ElementType.UInt32: t.AsSpan<uint>()[i] = (uint)Math.Abs(v) + 3_000_000_000u; break;
                case ElementType.UInt64: t.AsSpan<ulong>()[i] = (ulong)Math.Abs(v) + 10_000_000_000_000UL; break;
                case ElementType.Bool: t.Data[i] = (byte)(i % 2); break;
                default: throw new ArgumentOutOfRangeException(nameof(type));
            }
        }

        return t;
    }
}
