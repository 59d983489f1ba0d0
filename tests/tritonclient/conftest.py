"""Starts `batchwise serve` (ONNX Runtime on the CPU, zoo models) for NVIDIA's tritonclient to drive.

The client is the one in ../shared/tritonclient (NVIDIA's package, not part of this repository); set TRITONCLIENT_PATH
to use another copy. The server is the Release build of src/Batchwise.Cli (built here when missing); set BATCHWISE_CLI
to run another build (a path to batchwise or Batchwise.Cli.dll).
"""

import faulthandler
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TRITONCLIENT = pathlib.Path(os.environ.get("TRITONCLIENT_PATH", REPO.parent / "shared" / "tritonclient"))
if not (TRITONCLIENT / "tritonclient" / "__init__.py").exists():
    raise pytest.UsageError(
        f"NVIDIA's tritonclient was not found at {TRITONCLIENT}; set TRITONCLIENT_PATH to the folder holding tritonclient/"
    )
sys.path.insert(0, str(TRITONCLIENT))
sys.path.insert(0, str(pathlib.Path(__file__).parent))

import onnx_writer  # noqa: E402  (after the path is set)

# A hung call must fail the run with every thread's stack, never hang CI: a test (with its fixtures) that runs longer
# than this ends the process after printing where each thread is.
TEST_LIMIT_SECONDS = float(os.environ.get("BATCHWISE_TEST_LIMIT_SECONDS", "300"))


@pytest.fixture(autouse=True)
def _test_limit():
    faulthandler.dump_traceback_later(TEST_LIMIT_SECONDS, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


CLI_DLL = REPO / "src" / "Batchwise.Cli" / "bin" / "Release" / "net10.0" / "Batchwise.Cli.dll"


def cli_command():
    """The command line that runs the batchwise CLI."""
    explicit = os.environ.get("BATCHWISE_CLI")
    if explicit:
        return ["dotnet", explicit] if explicit.endswith(".dll") else [explicit]
    if not CLI_DLL.exists():
        subprocess.run(["dotnet", "build", str(REPO / "src" / "Batchwise.Cli"), "-c", "Release", "-v", "q"], check=True)
    return ["dotnet", str(CLI_DLL)]


class Server:
    """A running `batchwise serve`: its addresses and everything it printed."""

    def __init__(self, args, cwd):
        self.output = []
        self._ready = threading.Event()
        self.http = self.grpc = self.metrics = None
        self.process = subprocess.Popen(
            cli_command() + ["serve"] + args,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "DOTNET_CLI_TELEMETRY_OPTOUT": "1", "DOTNET_NOLOGO": "1"},
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(120) or self.http is None:
            self.stop()
            raise RuntimeError("batchwise serve did not start:\n" + "".join(self.output))

    def _read(self):
        for line in self.process.stdout:
            self.output.append(line)
            m = re.search(r"serving HTTP on http://([^/\s]+)/?.*gRPC on http://([^/\s]+)/?", line)
            if m:
                self.http, self.grpc = m.group(1), m.group(2)
                metrics = re.search(r"metrics on http://([^/\s]+)", line)
                self.metrics = metrics.group(1) if metrics else None
                self._ready.set()
        self._ready.set()

    def log(self):
        return "".join(self.output)

    def stop(self):
        """SIGTERM, as an orchestrator stops it; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def export_zoo(name, target):
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(cli_command() + ["zoo", "export", name, "-o", str(target)], check=True, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def repository(tmp_path_factory):
    """A model repository: mlp (dynamic batching, labels.txt), spare (for load/unload), text (BYTES in and out),
    broken (a folder without model.onnx)."""
    root = tmp_path_factory.mktemp("repository")
    export_zoo("zoo:mlp", root / "mlp" / "model.onnx")
    (root / "mlp" / "config.json").write_text(
        '{"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_microseconds": 500}}'
    )
    (root / "mlp" / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (root / "text").mkdir()
    (root / "text" / "model.onnx").write_bytes(
        onnx_writer.identity_model("text", "echo", onnx_writer.STRING, ["batch", 2])
    )
    (root / "text" / "config.json").write_text('{"max_batch_size": 4}')
    export_zoo("zoo:mlp?classes=3", root / "spare" / "model.onnx")
    (root / "broken").mkdir()
    return root


SERVE = ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="session")
def server(repository):
    """The server every test shares: explicit model control, every model loaded at startup (broken fails and is reported)."""
    s = Server(["--models", str(repository), "--model-control-mode", "explicit", "--load-model", "*"] + SERVE, cwd=REPO)
    yield s
    code = s.stop()
    assert code == 0, "batchwise serve did not exit cleanly:\n" + s.log()
