"""Stand-in for python-rapidjson on the GPU machine, whose python3 lacks it and cannot fetch it (no network).

tritonclient.grpc imports `rapidjson as json` and calls only `json.loads` and `json.dumps` with plain arguments, which
the standard library gives the same answers to. Put this folder on PYTHONPATH there only (bench/device scripts); CI
installs the real package (python3-rapidjson).
"""

from json import dumps, loads  # noqa: F401
