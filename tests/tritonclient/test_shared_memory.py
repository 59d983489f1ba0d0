"""Triton's system shared memory extension driven by tritonclient.utils.shared_memory, over http and grpc."""

import os

import numpy as np
import pytest
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from clients import PROTOCOLS, as_json, client, mlp_inputs, module


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_inputs_and_outputs_through_system_shared_memory(server, protocol):
    c = client(server, protocol)
    rows = 3
    x, inline = mlp_inputs(protocol, rows, seed=5)
    expected = c.infer("mlp", inline).as_numpy("probabilities")
    key = f"/bw-tc-{protocol}-{os.getpid()}"
    names = (f"in-{protocol}", f"out-{protocol}")
    in_region = shm.create_shared_memory_region(names[0], key + "-in", x.nbytes)
    out_region = shm.create_shared_memory_region(names[1], key + "-out", expected.nbytes)
    try:
        shm.set_shared_memory_region(in_region, [x])
        c.register_system_shared_memory(names[0], key + "-in", x.nbytes)
        c.register_system_shared_memory(names[1], key + "-out", expected.nbytes)
        status = as_json(protocol, c.get_system_shared_memory_status)
        listed = [r["name"] for r in status] if protocol == "http" else list(status["regions"])
        assert set(names) <= set(listed)

        inp = module(protocol).InferInput("input", [rows, 64], "FP32")
        inp.set_shared_memory(names[0], x.nbytes)
        out = module(protocol).InferRequestedOutput("probabilities")
        out.set_shared_memory(names[1], expected.nbytes)
        result = c.infer("mlp", [inp], outputs=[out])
        assert result.get_output("probabilities") is not None
        got = shm.get_contents_as_numpy(out_region, np.float32, [rows, 10])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

        short = module(protocol).InferInput("input", [rows, 64], "FP32")
        short.set_shared_memory(names[0], x.nbytes - 4)
        with pytest.raises(InferenceServerException, match="shared_memory_byte_size is"):
            c.infer("mlp", [short], outputs=[out])

        c.unregister_system_shared_memory(names[0])
        with pytest.raises(InferenceServerException, match=f"region '{names[0]}' is not registered"):
            c.infer("mlp", [inp], outputs=[out])
    finally:
        c.unregister_system_shared_memory()
        shm.destroy_shared_memory_region(in_region)
        shm.destroy_shared_memory_region(out_region)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_metadata_lists_system_shared_memory(server, protocol):
    metadata = as_json(protocol, client(server, protocol).get_server_metadata)
    assert "system_shared_memory" in metadata["extensions"]
