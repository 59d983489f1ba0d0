"""Triton's CUDA shared memory extension driven by tritonclient, over http and grpc.

Without a GPU (CI) the server must refuse to register in Triton's words and not list the extension. With a GPU and
cuda-python (tritonclient.utils.cuda_shared_memory needs it; the GPU machine's python3 has it) the test process
allocates device memory, the server (another process, as CUDA IPC requires) opens its handle, and inference by
reference must give the by-value result.
"""

import base64

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from clients import PROTOCOLS, as_json, client, mlp_inputs, module


def lists_cuda(server, protocol):
    return "cuda_shared_memory" in as_json(protocol, client(server, protocol).get_server_metadata)["extensions"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_without_a_gpu_register_is_refused_and_status_and_unregister_answer_as_triton(server, protocol):
    if lists_cuda(server, protocol):
        pytest.skip("the server has a GPU: the refusal applies only without one")
    c = client(server, protocol)
    fake = base64.b64encode(bytes(64))
    with pytest.raises(InferenceServerException, match="failed to register CUDA shared memory region: 'c', GPUs not supported"):
        c.register_cuda_shared_memory("c", fake, 0, 64)
    status = as_json(protocol, c.get_cuda_shared_memory_status)
    assert (status if protocol == "http" else status.get("regions", {})) in ([], {})
    c.unregister_cuda_shared_memory("never-registered")
    c.unregister_cuda_shared_memory()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_inputs_and_outputs_through_cuda_shared_memory(server, protocol):
    if not lists_cuda(server, protocol):
        pytest.skip("the server lists no cuda_shared_memory (no GPU or driver here)")
    # tritonclient raises RuntimeError, not ImportError, without cuda-python: check for it first so the test skips.
    pytest.importorskip("cuda.bindings.runtime", reason="tritonclient's cuda_shared_memory needs cuda-python (cuda.bindings)")
    cudashm = pytest.importorskip("tritonclient.utils.cuda_shared_memory", reason="tritonclient's cuda_shared_memory did not import")
    c = client(server, protocol)
    rows = 3
    x, inline = mlp_inputs(protocol, rows, seed=9)
    expected = c.infer("mlp", inline).as_numpy("probabilities")
    names = (f"cin-{protocol}", f"cout-{protocol}")
    in_region = cudashm.create_shared_memory_region(names[0], x.nbytes, 0)
    out_region = cudashm.create_shared_memory_region(names[1], expected.nbytes, 0)
    try:
        cudashm.set_shared_memory_region(in_region, [x])
        c.register_cuda_shared_memory(names[0], cudashm.get_raw_handle(in_region), 0, x.nbytes)
        c.register_cuda_shared_memory(names[1], cudashm.get_raw_handle(out_region), 0, expected.nbytes)
        status = as_json(protocol, c.get_cuda_shared_memory_status)
        listed = [r["name"] for r in status] if protocol == "http" else list(status["regions"])
        assert set(names) <= set(listed)

        inp = module(protocol).InferInput("input", [rows, 64], "FP32")
        inp.set_shared_memory(names[0], x.nbytes)
        out = module(protocol).InferRequestedOutput("probabilities")
        out.set_shared_memory(names[1], expected.nbytes)
        c.infer("mlp", [inp], outputs=[out])
        got = cudashm.get_contents_as_numpy(out_region, np.float32, [rows, 10])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

        c.unregister_cuda_shared_memory(names[0])
        with pytest.raises(InferenceServerException, match=f"region '{names[0]}' is not registered"):
            c.infer("mlp", [inp], outputs=[out])
    finally:
        c.unregister_cuda_shared_memory()
        cudashm.destroy_shared_memory_region(in_region)
        cudashm.destroy_shared_memory_region(out_region)
