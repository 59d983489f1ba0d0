"""Model control (Triton's model repository extension) and statistics, http and grpc."""

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from clients import PROTOCOLS, as_json, client, http_json, mlp_inputs
from conftest import REPO, SERVE, Server


def index_of(c, protocol, **kwargs):
    index = as_json(protocol, c.get_model_repository_index, **kwargs)
    entries = index["models"] if protocol == "grpc" else index
    return {e["name"]: e for e in entries}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_index_reports_each_model_with_its_state_and_why(server, protocol):
    index = index_of(client(server, protocol), protocol)
    assert {"mlp", "spare", "broken"} <= set(index)
    assert index["mlp"]["state"] == "READY"
    assert index["mlp"]["version"] == "1"
    assert index["broken"]["state"] == "UNAVAILABLE"
    assert "has no model.onnx" in index["broken"]["reason"]
    assert "model broken: failed to load" in server.log()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unload_then_load_a_model(server, protocol):
    c = client(server, protocol)
    c.unload_model("spare")
    assert not c.is_model_ready("spare")
    assert index_of(c, protocol)["spare"]["state"] == "UNAVAILABLE"
    _, inputs = mlp_inputs(protocol, 1)
    with pytest.raises(InferenceServerException, match="not available"):
        c.infer("spare", inputs)
    c.load_model("spare")
    assert c.is_model_ready("spare")
    assert c.infer("spare", inputs).as_numpy("probabilities").shape == (1, 3)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_load_with_a_config_override_and_a_bad_one(server, protocol):
    c = client(server, protocol)
    c.load_model("spare", config='{"max_batch_size": 2, "version": "3"}')
    assert as_json(protocol, c.get_model_metadata, "spare")["versions"] == ["3"]
    with pytest.raises(InferenceServerException, match="instance_count is 0"):
        c.load_model("spare", config='{"instance_count": 0}')
    assert c.is_model_ready("spare", "3")
    c.load_model("spare")
    assert c.is_model_ready("spare", "1")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_loading_a_model_that_is_not_in_the_repository_fails_naming_it(server, protocol):
    with pytest.raises(InferenceServerException, match="has no folder 'nope'"):
        client(server, protocol).load_model("nope")


def test_load_and_unload_are_refused_without_explicit_model_control(repository):
    s = Server(["--models", str(repository)] + SERVE, cwd=REPO)
    try:
        for protocol in PROTOCOLS:
            c = client(s, protocol)
            with pytest.raises(InferenceServerException, match="--model-control-mode explicit"):
                c.unload_model("mlp")
            assert c.is_model_ready("mlp")
    finally:
        assert s.stop() == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_statistics_in_tritons_schema(server, protocol):
    c = client(server, protocol)
    before = as_json(protocol, c.get_inference_statistics, "mlp")["model_stats"][0]
    _, inputs = mlp_inputs(protocol, 2)
    for _ in range(3):
        c.infer("mlp", inputs)
    stats = as_json(protocol, c.get_inference_statistics, "mlp", "1")["model_stats"][0]
    assert stats["name"] == "mlp" and stats["version"] == "1"
    assert int(stats["inference_count"]) - int(before.get("inference_count", 0)) == 6
    assert int(stats["execution_count"]) - int(before.get("execution_count", 0)) == 3
    for key in ["success", "queue", "compute_input", "compute_infer", "compute_output"]:
        assert int(stats["inference_stats"][key]["count"]) >= 3
        assert int(stats["inference_stats"][key]["ns"]) > 0
    sizes = {int(b["batch_size"]) for b in stats["batch_stats"]}
    assert 2 in sizes
    every = as_json(protocol, c.get_inference_statistics)["model_stats"]
    assert {"mlp", "spare"} <= {s["name"] for s in every}


def test_stats_of_every_model_is_not_a_model_named_stats(server):
    status, body = http_json(server, "GET", "/v2/models/stats")
    assert status == 200
    assert "model_stats" in body
    status, body = http_json(server, "GET", "/v2/models/nope/stats")
    assert status == 404 and "Unknown model 'nope'" in body["error"]


def test_metrics_port_serves_tritons_families(server):
    import urllib.request

    c = client(server, "http")
    _, inputs = mlp_inputs("http", 1)
    c.infer("mlp", inputs)
    assert server.metrics is not None, server.log()
    with urllib.request.urlopen(f"http://{server.metrics}/metrics", timeout=30) as response:
        text = response.read().decode()
    for family in [
        "nv_inference_request_success",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "batchwise_inference_requests_total",
    ]:
        assert f'{family}{{model="mlp",version="1"}}' in text, family
