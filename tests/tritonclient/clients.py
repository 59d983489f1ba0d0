"""tritonclient's http and grpc clients behind one small shim, so each test runs over both protocols."""

import json
import os
import urllib.error
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio

# Both protocols unless BATCHWISE_TRITONCLIENT_PROTOCOLS names fewer: the GPU machine's python3 has no geventhttpclient
# (tritonclient.http's transport) and no network to fetch it, so its CUDA shared memory run asks for grpc alone. CI
# installs both and leaves the variable unset; a missing http client there fails the run at this import.
PROTOCOLS = [p for p in os.environ.get("BATCHWISE_TRITONCLIENT_PROTOCOLS", "http,grpc").split(",") if p]
if "http" in PROTOCOLS:
    import tritonclient.http as httpclient
    import tritonclient.http.aio as httpaio


def module(protocol):
    return httpclient if protocol == "http" else grpcclient


def client(server, protocol):
    if protocol == "http":
        return httpclient.InferenceServerClient(server.http, concurrency=8)
    return grpcclient.InferenceServerClient(server.grpc)


def aio_client(server, protocol):
    if protocol == "http":
        return httpaio.InferenceServerClient(server.http)
    return grpcaio.InferenceServerClient(server.grpc)


def as_json(protocol, call, *args, **kwargs):
    """A client call's answer as a dict on both protocols (grpc returns protobuf unless asked for JSON)."""
    if protocol == "grpc":
        kwargs["as_json"] = True
    return call(*args, **kwargs)


def mlp_inputs(protocol, rows, seed=1, binary=True):
    x = np.random.default_rng(seed).random((rows, 64), dtype=np.float32)
    inp = module(protocol).InferInput("input", [rows, 64], "FP32")
    if protocol == "http":
        inp.set_data_from_numpy(x, binary_data=binary)
    else:
        inp.set_data_from_numpy(x)
    return x, [inp]


def requested(protocol, name, binary=True, class_count=0):
    if protocol == "http":
        return httpclient.InferRequestedOutput(name, binary_data=binary, class_count=class_count)
    return grpcclient.InferRequestedOutput(name, class_count=class_count)


def http_call(server, method, path, body=None, headers=None):
    """A raw HTTP call (for what tritonclient does not expose): (status, headers, body bytes)."""
    request = urllib.request.Request(f"http://{server.http}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def http_json(server, method, path, document=None):
    body = None if document is None else json.dumps(document).encode()
    status, _, data = http_call(server, method, path, body, {"Content-Type": "application/json"} if body else None)
    return status, (json.loads(data) if data else None)
