"""Writes tiny ONNX models for the suite without the onnx package (Debian has none): protobuf encoded by hand.

Only the ModelProto fields these models use, with onnx.proto's field numbers.
"""

STRING = 8  # TensorProto.DataType.STRING
FLOAT = 1


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, payload):
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int(number, value):
    """A varint field (wire type 0)."""
    return _varint(number << 3) + _varint(value)


def _value_info(name, elem_type, dims):
    shape = b"".join(
        _field(1, _field(2, d.encode()) if isinstance(d, str) else _int(1, d)) for d in dims
    )  # TensorShapeProto.dim: dim_param = 2, dim_value = 1
    tensor_type = _int(1, elem_type) + _field(2, shape)  # TypeProto.Tensor: elem_type = 1, shape = 2
    return _field(1, name.encode()) + _field(2, _field(1, tensor_type))  # ValueInfoProto: name = 1, type = 2


def identity_model(input_name, output_name, elem_type, dims, opset=17):
    """A model that returns its input: input_name -> Identity -> output_name."""
    node = _field(1, input_name.encode()) + _field(2, output_name.encode()) + _field(4, b"Identity")
    graph = (
        _field(1, node)
        + _field(2, b"identity")
        + _field(11, _value_info(input_name, elem_type, dims))
        + _field(12, _value_info(output_name, elem_type, dims))
    )
    return (
        _int(1, 8)  # ir_version
        + _field(2, b"batchwise-tests")  # producer_name
        + _field(7, graph)
        + _field(8, _field(1, b"") + _int(2, opset))  # opset_import: domain = 1, version = 2
    )
