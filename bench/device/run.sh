#!/usr/bin/env bash
# Runs the CUDA engine's checks on a GPU machine from a carried self-contained publish; builds nothing.
#
# Here (with the .NET SDK), from the repository root:
#   dotnet publish src/Batchwise.Cli -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true -p:TrimMode=partial -o /tmp/pub/cli
#   dotnet publish tests/Batchwise.Cuda.Tests -c Release -r linux-x64 --self-contained -o /tmp/pub/tests
#   mkdir -p .device && tar -cJf .device/cuda.tar.xz -C /tmp/pub . && cp bench/device/run.sh .device/
# There (the GPU machine, no SDK needed): bash .device/run.sh   (logs and reports go to $OUT, default ./device-out)
#
# It runs: `batchwise devices`; the GPU tests (each operator and every zoo model against ONNX Runtime on the CPU,
# a torchvision ResNet-50 exported with PyTorch when python3 has torch, ONNX's backend node tests when python3 has onnx);
# and timings of the zoo models (fp32, and fp32 with TF32). With the generic commands present in the publish it also runs
# `batchwise compare` and `batchwise bench --engine cuda`.
set -uo pipefail
OUT=${OUT:-$PWD/device-out}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/tmp/batchwise-device}
mkdir -p "$OUT" "$WORK"
tar -xJf "$HERE/cuda.tar.xz" -C "$WORK"
CLI="$WORK/cli/Batchwise.Cli"
TESTS="$WORK/tests/Batchwise.Cuda.Tests"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 BATCHWISE_REPORT_DIR="$OUT"

{
  echo "# device"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  echo
  echo "# batchwise devices"
  "$CLI" devices 2>&1
} > "$OUT/devices.txt"

PY=$(command -v python3 || true)
if [ -n "$PY" ]; then
  NODE=$("$PY" -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node"))' 2>/dev/null || true)
  if [ -z "$NODE" ] || [ ! -d "$NODE" ]; then
    # Wheels without the backend test data: generate it from the onnx package's own test cases.
    "$PY" -m onnx.backend.test.cmd_tools generate-data -o "$WORK/onnx-data" > "$WORK/generate.log" 2>&1
    echo "onnx node test data generated: $(ls "$WORK/onnx-data/node" 2>/dev/null | wc -l) cases ($(tail -1 "$WORK/generate.log"))" >> "$OUT/devices.txt"
    NODE="$WORK/onnx-data/node"
  fi
  [ -d "$NODE" ] && export BATCHWISE_ONNX_NODE_TESTS="$NODE"
  PYTHONUNBUFFERED=1 "$PY" - "$WORK/resnet50.onnx" >> "$OUT/devices.txt" 2>&1 <<'PYEOF'
import sys, torch, torchvision
model = torchvision.models.resnet50(weights=None).eval()
x = torch.randn(1, 3, 224, 224)
torch.onnx.export(model, x, sys.argv[1], dynamo=False, opset_version=17, input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
print("exported torchvision resnet50 with torch", torch.__version__, "to", sys.argv[1])
PYEOF
  [ -f "$WORK/resnet50.onnx" ] && export BATCHWISE_TORCHVISION_MODEL="$WORK/resnet50.onnx"
fi

# Correctness first (sequential: timings and ORT's CPU threads must not share the machine), then node tests, then timings.
# PHASES picks what runs (each phase has its own time limit so one stuck phase cannot eat the others' logs).
PHASES=${PHASES:-tests nodes bench}
: > "$OUT/gpu-tests.log"
if [[ " $PHASES " == *" tests "* ]]; then
  timeout "${TESTS_LIMIT:-240}" "$TESTS" -parallelMode none -class- '*NodeGpuTests' -method- '*Throughput*' -noColor >> "$OUT/gpu-tests.log" 2>&1
  echo "gpu tests exit $?" >> "$OUT/gpu-tests.log"
fi
if [[ " $PHASES " == *" nodes "* ]]; then
  timeout "${NODES_LIMIT:-180}" "$TESTS" -parallelMode none -class '*NodeGpuTests' -noColor >> "$OUT/gpu-tests.log" 2>&1
  echo "node tests exit $?" >> "$OUT/gpu-tests.log"
fi
if [[ " $PHASES " == *" bench "* ]]; then
  BATCHWISE_CUDA_BENCH=1 timeout "${BENCH_LIMIT:-240}" "$TESTS" -parallelMode none -method '*Throughput*' -noColor >> "$OUT/gpu-tests.log" 2>&1
  echo "throughput exit $?" >> "$OUT/gpu-tests.log"
fi

if "$CLI" --help 2>/dev/null | grep -q ' bench'; then
  for m in resnet50 mobilenetv2; do
    timeout 120 "$CLI" bench "zoo:$m" --engine cuda 2>&1 | tail -40
  done > "$OUT/cli-bench.txt"
fi
ls -la "$OUT"
