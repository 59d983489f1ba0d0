"""Health, metadata, configuration and inference: every basic call of tritonclient, http and grpc, sync and async."""

import asyncio

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from clients import PROTOCOLS, aio_client, as_json, client, http_json, mlp_inputs, module, requested


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_health_and_server_metadata(server, protocol):
    c = client(server, protocol)
    assert c.is_server_live()
    assert c.is_server_ready()
    assert c.is_model_ready("mlp")
    assert c.is_model_ready("mlp", "1")
    metadata = as_json(protocol, c.get_server_metadata)
    assert metadata["name"] == "batchwise"
    assert "binary_tensor_data" in metadata["extensions"]
    assert "model_configuration" in metadata["extensions"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_ready_is_false_for_an_unknown_model_or_version(server, protocol):
    c = client(server, protocol)
    assert not c.is_model_ready("nope")
    assert not c.is_model_ready("mlp", "7")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_metadata(server, protocol):
    m = as_json(protocol, client(server, protocol).get_model_metadata, "mlp")
    assert m["name"] == "mlp"
    assert m["versions"] == ["1"]
    assert m["platform"] == "onnxruntime_onnx"
    assert m["inputs"][0]["name"] == "input"
    assert m["inputs"][0]["datatype"] == "FP32"
    assert [int(d) for d in m["inputs"][0]["shape"]] == [-1, 64]
    assert m["outputs"][0]["name"] == "probabilities"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_model_config_is_tritons(server, protocol):
    config = as_json(protocol, client(server, protocol).get_model_config, "mlp")
    if protocol == "grpc":
        config = config["config"]
    assert config["name"] == "mlp"
    assert config["backend"] == "onnxruntime"
    assert config["platform"] == "onnxruntime_onnx"
    assert int(config["max_batch_size"]) == 8
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert [int(d) for d in config["input"][0]["dims"]] == [64]
    assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) == 500
    assert config["parameters"]["batchwise_engine"]["string_value"] == "ort"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unknown_model_metadata_is_an_error(server, protocol):
    with pytest.raises(InferenceServerException, match="Unknown model 'nope'"):
        client(server, protocol).get_model_metadata("nope")


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("binary", [True, False])
def test_infer_returns_softmax_rows_identical_over_both_protocols(server, protocol, binary):
    x, inputs = mlp_inputs(protocol, 3, seed=5, binary=binary)
    result = client(server, protocol).infer(
        "mlp", inputs, outputs=[requested(protocol, "probabilities", binary=binary)], request_id="r-1"
    )
    y = result.as_numpy("probabilities")
    assert y.shape == (3, 10) and y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    response = result.get_response(as_json=True) if protocol == "grpc" else result.get_response()
    assert response["id"] == "r-1"
    _, other_inputs = mlp_inputs("grpc" if protocol == "http" else "http", 3, seed=5)
    other = client(server, "grpc" if protocol == "http" else "http").infer("mlp", other_inputs)
    np.testing.assert_array_equal(y, other.as_numpy("probabilities"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rows_batched_by_the_server_equal_rows_run_together(server, protocol):
    c = client(server, protocol)
    x, inputs = mlp_inputs(protocol, 4, seed=9)
    together = c.infer("mlp", inputs).as_numpy("probabilities")
    calls = []
    for row in range(4):
        inp = type(inputs[0])("input", [1, 64], "FP32")
        inp.set_data_from_numpy(x[row : row + 1])
        calls.append(("mlp", [inp]))
    alone = np.concatenate([r.as_numpy("probabilities") for r in async_many(c, protocol, calls)])
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-7)


def async_many(c, protocol, calls):
    """Sends every (model, inputs) with the sync client's async_infer at once; returns the results in order."""
    if protocol == "http":
        return [f.get_result() for f in [c.async_infer(model, inputs) for model, inputs in calls]]
    import queue

    done = queue.Queue()
    for i, (model, inputs) in enumerate(calls):
        c.async_infer(model, inputs, callback=lambda result, error, i=i: done.put((i, result, error)))
    results = [None] * len(calls)
    for _ in calls:
        i, result, error = done.get(timeout=30)
        assert error is None, error
        results[i] = result
    return results


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sync_clients_async_infer(server, protocol):
    c = client(server, protocol)
    _, inputs = mlp_inputs(protocol, 2, seed=3)
    expected = c.infer("mlp", inputs).as_numpy("probabilities")
    for r in async_many(c, protocol, [("mlp", inputs)] * 4):
        np.testing.assert_array_equal(r.as_numpy("probabilities"), expected)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_aio_clients(server, protocol):
    async def run():
        c = aio_client(server, protocol)
        try:
            assert await c.is_server_live()
            assert await c.is_model_ready("mlp")
            _, inputs = mlp_inputs(protocol, 2, seed=4)
            results = await asyncio.gather(*[c.infer("mlp", inputs) for _ in range(8)])
            first = results[0].as_numpy("probabilities")
            assert first.shape == (2, 10)
            for r in results[1:]:
                np.testing.assert_array_equal(r.as_numpy("probabilities"), first)
        finally:
            await c.close()

    asyncio.run(run())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_input_is_refused_with_a_message_naming_it(server, protocol):
    inp = module(protocol).InferInput("input", [1, 32], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 32), np.float32))
    with pytest.raises(InferenceServerException, match="expects"):
        client(server, protocol).infer("mlp", [inp])


@pytest.mark.parametrize(
    "method, path, status",
    [("GET", "/v2/nowhere", 404), ("POST", "/v2/health/live", 405), ("GET", "/v2/models/mlp/infer", 405)],
)
def test_unknown_routes_and_wrong_methods_answer_with_an_error_object(server, method, path, status):
    code, body = http_json(server, method, path)
    assert code == status
    assert "error" in body


def test_grpc_stream_infer_answers_each_request_and_reports_errors_per_response(server):
    import queue

    c = client(server, "grpc")
    answers = queue.Queue()
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        expected = {}
        for i in range(5):
            x, inputs = mlp_inputs("grpc", 1, seed=40 + i)
            expected[f"s-{i}"] = x
            c.async_stream_infer("mlp", inputs, request_id=f"s-{i}")
        bad = module("grpc").InferInput("input", [1, 32], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 32), np.float32))
        c.async_stream_infer("mlp", [bad], request_id="bad")
        results, errors = {}, []
        for _ in range(6):
            result, error = answers.get(timeout=30)
            if error is not None:
                errors.append(error)
            else:
                results[result.get_response().id] = result.as_numpy("probabilities")
    finally:
        c.stop_stream()
    assert sorted(results) == sorted(expected)
    assert len(errors) == 1 and "expects" in str(errors[0])
    for rid, x in expected.items():
        _, inputs = mlp_inputs("grpc", 1, seed=40 + int(rid[2:]))
        np.testing.assert_allclose(results[rid], c.infer("mlp", inputs).as_numpy("probabilities"), rtol=1e-5, atol=1e-7)


def test_grpc_aio_stream_infer(server):
    async def run():
        c = aio_client(server, "grpc")
        try:

            async def requests():
                for i in range(4):
                    _, inputs = mlp_inputs("grpc", 2, seed=60 + i)
                    yield {"model_name": "mlp", "inputs": inputs, "request_id": f"a-{i}"}

            ids = []
            async for result, error in c.stream_infer(requests()):
                assert error is None, error
                assert result.as_numpy("probabilities").shape == (2, 10)
                ids.append(result.get_response().id)
            assert sorted(ids) == [f"a-{i}" for i in range(4)]
        finally:
            await c.close()

    asyncio.run(run())
