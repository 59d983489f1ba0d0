"""BYTES tensors both ways and the classification extension, http (binary and JSON) and grpc."""

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from clients import PROTOCOLS, client, mlp_inputs, module, requested
from conftest import LABELS

WORDS = np.array([[b"alpha", "bé".encode()], [b"", b"\x00\xff binary"]], dtype=np.object_)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("binary", [True, False])
def test_bytes_round_trip(server, protocol, binary):
    # JSON carries text, so the JSON case sends UTF-8 only; binary and grpc carry any bytes.
    data = WORDS if binary or protocol == "grpc" else np.array([[b"alpha", "bé".encode()]], dtype=np.object_)
    inp = module(protocol).InferInput("text", list(data.shape), "BYTES")
    if protocol == "http":
        inp.set_data_from_numpy(data, binary_data=binary)
    else:
        inp.set_data_from_numpy(data)
    result = client(server, protocol).infer("text", [inp], outputs=[requested(protocol, "echo", binary=binary)])
    echo = result.as_numpy("echo")
    assert echo.shape == data.shape
    assert [e if isinstance(e, bytes) else e.encode() for e in echo.ravel()] == list(data.ravel())


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("binary", [True, False])
def test_classification_returns_top_classes_with_labels(server, protocol, binary):
    c = client(server, protocol)
    _, inputs = mlp_inputs(protocol, 2, seed=21)
    probabilities = c.infer("mlp", inputs).as_numpy("probabilities")
    result = c.infer("mlp", inputs, outputs=[requested(protocol, "probabilities", binary=binary, class_count=3)])
    classes = result.as_numpy("probabilities")
    assert classes.shape == (2, 3)
    for row in range(2):
        expected_order = np.argsort(-probabilities[row], kind="stable")[:3]
        got = [(e.decode() if isinstance(e, bytes) else e).split(":") for e in classes[row]]
        assert [int(g[1]) for g in got] == list(expected_order)
        assert [g[2] for g in got] == [LABELS[i] for i in expected_order]
        np.testing.assert_allclose([float(g[0]) for g in got], probabilities[row][expected_order], atol=1e-6)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_classification_of_a_bytes_output_is_refused(server, protocol):
    inp = module(protocol).InferInput("text", [1, 2], "BYTES")
    inp.set_data_from_numpy(np.array([[b"a", b"b"]], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="unsupported type 'BYTES'"):
        client(server, protocol).infer("text", [inp], outputs=[requested(protocol, "echo", class_count=1)])
