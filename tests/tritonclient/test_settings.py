"""HTTP compression, and the trace and logging extensions, http and grpc."""

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from clients import PROTOCOLS, as_json, client, mlp_inputs


@pytest.mark.parametrize("request_encoding", [None, "gzip", "deflate"])
@pytest.mark.parametrize("response_encoding", [None, "gzip", "deflate"])
def test_http_compressed_requests_and_responses(server, request_encoding, response_encoding):
    c = client(server, "http")
    _, inputs = mlp_inputs("http", 3, seed=77)
    plain = c.infer("mlp", inputs).as_numpy("probabilities")
    result = c.infer(
        "mlp",
        inputs,
        request_compression_algorithm=request_encoding,
        response_compression_algorithm=response_encoding,
    )
    np.testing.assert_array_equal(result.as_numpy("probabilities"), plain)


def _trace(protocol, c, model=None, settings=None):
    if settings is None:
        answer = as_json(protocol, c.get_trace_settings, model_name=model)
    else:
        answer = as_json(protocol, c.update_trace_settings, model_name=model, settings=settings)
    if protocol == "grpc":
        return {k: v.get("value", []) for k, v in answer["settings"].items()}
    return answer


def _first(value):
    return value[0] if isinstance(value, list) else value


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_trace_settings_global_and_per_model(server, protocol):
    c = client(server, protocol)
    settings = _trace(protocol, c)
    assert _first(settings["trace_level"]) == "OFF"
    assert _first(settings["trace_mode"]) == "opentelemetry"
    updated = _trace(protocol, c, "mlp", {"trace_level": ["TIMESTAMPS"], "trace_rate": "5"})
    assert _first(updated["trace_level"]) == "TIMESTAMPS"
    assert _first(updated["trace_rate"]) == "5"
    assert _first(_trace(protocol, c)["trace_level"]) == "OFF"
    cleared = _trace(protocol, c, "mlp", {"trace_level": None, "trace_rate": None})
    assert _first(cleared["trace_level"]) == "OFF"
    with pytest.raises(InferenceServerException, match="trace_rate '0'"):
        _trace(protocol, c, None, {"trace_rate": "0"})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_log_settings(server, protocol):
    c = client(server, protocol)

    def settings(answer):
        if protocol == "grpc":
            return {k: list(v.values())[0] if v else None for k, v in answer["settings"].items()}
        return answer

    before = settings(as_json(protocol, c.get_log_settings))
    assert before["log_format"] == "default"
    after = settings(as_json(protocol, c.update_log_settings, {"log_verbose_level": 1}))
    assert int(after["log_verbose_level"]) == 1
    after = settings(as_json(protocol, c.update_log_settings, {"log_verbose_level": 0}))
    assert int(after.get("log_verbose_level") or 0) == 0
    with pytest.raises(InferenceServerException, match="log_format must be"):
        c.update_log_settings({"log_format": "xml"})
