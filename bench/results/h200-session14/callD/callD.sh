#!/usr/bin/env bash
# Session 14, call D (final code, .device/rev): NVIDIA's tritonclient over CUDA shared memory against `batchwise serve`
# (issue 12's GPU test), the NVRTC compile cases, the CUDA engine's GPU tests class by class with ONNX's node tests
# (bench/device/gpu-tests.sh), then the int8 route's b=256 profile after the pool revert (issue 19).
# Carries the whole CLI (cli-full.tar.xz) and the test binary's own files (testdiff.tar.xz) laid over a copy of it.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 550 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
rm -rf "$WORK/cli" "$WORK/tests" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && cp -r "$WORK/cli" "$WORK/tests" && tar -xJf .device/testdiff.tar.xz -C "$WORK/tests"
tar -xJf .device/node.tar.xz -C "$WORK" && tar -xzf .device/tritonclient.tgz -C "$WORK"
CLI=$WORK/cli/Batchwise.Cli; TESTS=$WORK/tests/Batchwise.Cuda.Tests
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev); $(ls $WORK/node | wc -l) node cases"
# tritonclient's CUDA shared memory test (http and grpc): the test process allocates device memory, the server opens it.
python3 -c 'import tritonclient' 2>/dev/null; python3 - > "$R/python-deps.txt" 2>&1 <<'PY'
import importlib
for m in ["numpy", "pytest", "grpc", "google.protobuf", "geventhttpclient", "rapidjson", "aiohttp", "cuda.bindings.runtime"]:
    try:
        mod = importlib.import_module(m); print(m, getattr(mod, "__version__", "ok"))
    except Exception as e:
        print(m, "MISSING", type(e).__name__, e)
PY
t "python deps: $(grep -c MISSING "$R/python-deps.txt") missing: $(grep MISSING "$R/python-deps.txt" | cut -d' ' -f1 | tr '\n' ' ')"
BATCHWISE_CLI=$CLI TRITONCLIENT_PATH=$WORK/tritonclient BATCHWISE_TEST_LIMIT_SECONDS=100 timeout "$(lim 120)" python3 -m pytest -x -v -rs tests/tritonclient/test_cuda_shared_memory.py > "$R/tritonclient-cuda-shm.txt" 2>&1
t "tritonclient cuda shm exit $? $(tail -1 "$R/tritonclient-cuda-shm.txt")"
BATCHWISE_REQUIRE_GPU=1 timeout "$(lim 60)" "$TESTS" -parallelMode none -class '*.KernelCompileTests' -noColor > "$R/kernel-compile.log" 2>&1
t "KernelCompileTests exit $? $(grep -E 'Total:' "$R/kernel-compile.log")"
# Issue 11's and 12's classes first, the int8 classes (slow plans) last.
ORDER="ShapeGpuTests StagedGpuTests PipelinedStagedGpuTests TransferGpuTests ModelGpuTests MlpGpuTests OperatorGpuTests OperatorCaseGpuTests KernelCaseGpuTests NodeGpuTests DataDependentGpuTests AttentionGpuTests GroupedConvGpuTests PointwiseConvGpuTests StemConvGpuTests PlanThreadsGpuTests TelemetryGpuTests CeilingsGpuTests GpuCeilingsProbeTests ChildRunTests QuantizedModelGpuTests Int8LayerGpuTests Int8ModelGpuTests Int8PrecisionGpuTests Int8ResidualFusionGpuTests Int8ChildGpuTests"
ALL=$("$TESTS" -list classes 2>/dev/null | grep -E '\.Gpu\.|Gpu[A-Za-z0-9_]*Tests$' | sed 's/.*\.//' | sort -u)
REST=$(for c in $ALL; do [[ " $ORDER " == *" $c "* ]] || echo "$c"; done | tr '\n' ' ')
CLASSES="$ORDER $REST" TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 150 )) BATCHWISE_ONNX_NODE_TESTS=$WORK/node bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
t "gpu tests: $(grep -c 'exit 0' "$R/gpu/summary.txt") classes exit 0 of $(wc -l < "$R/gpu/summary.txt")"
cat "$R/gpu/summary.txt" >> "$R/log.txt"
timeout "$(lim 50)" "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx" > "$R/r50q-optimize.txt" 2>&1
t "optimize int8 exit $?"
BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused timeout "$(lim 100)" "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --json "$R/r50q-256.json" > "$R/r50q-256.txt" 2>&1
t "r50q-256 exit $? $(grep -E '│ +256 ' "$R/r50q-256.txt" | head -1 | tr -s ' ' | cut -c1-60)"
t "done"
