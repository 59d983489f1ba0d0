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
# One bundle (cuda.tar.xz: cli/ and tests/), or the two halves carried on separate calls when together they pass the
# carry limit (cli.tar.xz, tests.tar.xz); what an earlier call on the same warm machine extracted stays in $WORK.
for bundle in cuda cli tests; do
  [ -f "$HERE/$bundle.tar.xz" ] && tar -xJf "$HERE/$bundle.tar.xz" -C "$WORK"
done
# The CLI as the files that differ from the test publish (same self-contained runtime), to fit one carry with it.
[ -f "$HERE/cli-diff.tar.xz" ] && rm -rf "$WORK/cli" && cp -r "$WORK/tests" "$WORK/cli" && tar -xJf "$HERE/cli-diff.tar.xz" -C "$WORK/cli"
# The build before this work, for same-run comparisons: its files that differ from the test publish's (same runtime).
[ -f "$HERE/cli-old.tar.xz" ] && rm -rf "$WORK/cli-old" && cp -r "$WORK/tests" "$WORK/cli-old" && tar -xJf "$HERE/cli-old.tar.xz" -C "$WORK/cli-old"
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

# On the GPU machine every GPU test must run: a skip (no GPU found, a library the resolver missed) is a failure.
export BATCHWISE_REQUIRE_GPU=1

PY=$(command -v python3 || true)
REPO=$(pwd)
# PHASES picks what runs; each phase has its own time limit so one stuck phase cannot eat the others' logs.
PHASES=${PHASES:-tests cli bench}
# The ONNX node tests and the torchvision export below feed only the tests, nodes and cli phases: others skip them.
NEEDS_CASES=0
[[ " $PHASES " == *" tests "* || " $PHASES " == *" nodes "* || " $PHASES " == *" cli "* ]] && NEEDS_CASES=1
# ONNX's per-operator node tests: carried beside the bundle (node.tar.xz, made here from Debian's libonnx-testdata:
# tar -cJf .device/node.tar.xz -C /usr/share/libonnx-testdata/data node), else from the onnx Python package.
if [ -f "$HERE/node.tar.xz" ]; then
  tar -xJf "$HERE/node.tar.xz" -C "$WORK" && export BATCHWISE_ONNX_NODE_TESTS="$WORK/node"
  echo "onnx node test data carried: $(ls "$WORK/node" | wc -l) cases" >> "$OUT/devices.txt"
fi
if [ "$NEEDS_CASES" = 1 ] && [ -n "$PY" ] && [ -z "${BATCHWISE_ONNX_NODE_TESTS:-}" ]; then
  NODE=$("$PY" -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node"))' 2>/dev/null || true)
  if [ -z "$NODE" ] || [ ! -d "$NODE" ]; then
    # Wheels without the backend test data: generate it from the onnx package's own test cases.
    "$PY" -m onnx.backend.test.cmd_tools generate-data -o "$WORK/onnx-data" > "$WORK/generate.log" 2>&1
    NODE=$(find "$WORK/onnx-data" -maxdepth 3 -type d -name node | head -1)
    { echo "onnx node test data generated: $(ls "${NODE:-/nonexistent}" 2>/dev/null | wc -l) cases in ${NODE:-nowhere}"; tail -5 "$WORK/generate.log"; find "$WORK/onnx-data" -maxdepth 2 | head -5; } >> "$OUT/devices.txt"
  fi
  [ -d "$NODE" ] && export BATCHWISE_ONNX_NODE_TESTS="$NODE"
fi
if [ "$NEEDS_CASES" = 1 ] && [ -n "$PY" ]; then
  # torchvision exports (random weights, dynamic batch) with PyTorch's own output as a node-test case.
  PYTHONUNBUFFERED=1 "$PY" "$REPO/bench/peers/export_torchvision.py" -o "$WORK/peers" >> "$OUT/devices.txt" 2>&1
  [ -f "$WORK/peers/test_resnet50/model.onnx" ] && export BATCHWISE_TORCHVISION_MODEL="$WORK/peers/test_resnet50/model.onnx"
fi

# Correctness runs first and sequentially (ONNX Runtime's CPU threads and the timings must not share the machine).
: > "$OUT/gpu-tests.log"
: > "$OUT/cli.txt"
if [[ " $PHASES " == *" tests "* ]]; then
  timeout "${TESTS_LIMIT:-180}" "$TESTS" -parallelMode none -class- '*NodeGpuTests' -noColor >> "$OUT/gpu-tests.log" 2>&1
  echo "gpu tests exit $?" >> "$OUT/gpu-tests.log"
fi
if [[ " $PHASES " == *" nodes "* ]]; then
  timeout "${NODES_LIMIT:-180}" "$TESTS" -parallelMode none -class '*NodeGpuTests' -noColor >> "$OUT/gpu-tests.log" 2>&1
  echo "node tests exit $?" >> "$OUT/gpu-tests.log"
fi
if [[ " $PHASES " == *" cli "* ]]; then
  {
    # The installed onnx package's cases (generated when its wheel has none), and the carried Debian libonnx-testdata
    # 1.12 cases for the listed operators (.device/node) where present.
    for dir in ${BATCHWISE_ONNX_NODE_TESTS:-} "$HERE/node"; do
      [ -d "$dir" ] && [ -n "$(ls "$dir")" ] || continue
      echo "## batchwise conformance $dir --engine cuda --ops cuda-issue-3"
      timeout 200 "$CLI" conformance "$dir" --engine cuda --ops cuda-issue-3 --json "$OUT/conformance-$(basename "$(dirname "$dir")").json" 2>&1; echo "exit $?"
    done
    if [ -d "$WORK/peers" ]; then
      echo "## batchwise conformance $WORK/peers --engine cuda --atol 1e-4 (torchvision exports vs PyTorch's output)"
      timeout 60 "$CLI" conformance "$WORK/peers" --engine cuda --atol 1e-4 2>&1; echo "exit $?"
    fi
    for m in zoo:resnet50 zoo:mobilenetv2 zoo:yolov8n zoo:bert ${BATCHWISE_TORCHVISION_MODEL:-}; do
      echo "## batchwise compare $m --engines ort,cuda -b 4"
      timeout 90 "$CLI" compare "$m" --engines ort,cuda -b 4 2>&1; echo "exit $?"
    done
  } >> "$OUT/cli.txt"
fi
if [[ " $PHASES " == *" bench "* ]]; then
  {
    for spec in "zoo:resnet50 -b 1,8,64,256" "zoo:resnet50 -b 1,8,64,256 --no-cuda-graph" "zoo:mobilenetv2 -b 1,8,64,256" "zoo:yolov8n?size=640 -b 1,8,32" "zoo:bert -b 1,8,32"; do
      echo "## batchwise bench $spec --engine cuda --duration 1.5s --warmup 0.5s"
      # shellcheck disable=SC2086
      timeout 120 "$CLI" bench $spec --engine cuda --duration 1.5s --warmup 0.5s 2>&1; echo "exit $?"
    done
  } >> "$OUT/cli.txt"
  {
    # TF32 and fp16 beside the fp32 rows above (this was a GPU "test" without an assertion; a measurement is bench's job).
    for variant in "--tf32" "--precision fp16"; do
      for spec in "zoo:resnet50 -b 1,8,64,256" "zoo:mobilenetv2 -b 1,64" "zoo:yolov8n?size=640 -b 1,8" "zoo:bert -b 1,8"; do
        echo "## batchwise bench $spec --engine cuda $variant --duration 1s --warmup 0.5s"
        # shellcheck disable=SC2086
        timeout "${BENCH_LIMIT:-150}" "$CLI" bench $spec --engine cuda $variant --duration 1s --warmup 0.5s 2>&1; echo "exit $?"
      done
    done
  } >> "$OUT/cli.txt"
  if [ -n "$PY" ]; then
    timeout 120 "$PY" "$REPO/bench/peers/torch_bench.py" --models resnet50 --variants fp32 --batch-sizes 1,8,64,256 --windows 3 --window-seconds 0.5 > "$OUT/torch.jsonl" 2>&1
  fi
fi
if [[ " $PHASES " == *" fp16 "* ]]; then
  {
    # Half precision: throughput at the issue's batch sizes and per-layer profiles (every layer in $OUT/fp16-layers.tar.gz).
    mkdir -p "$WORK/fp16"
    i=0
    for spec in "zoo:resnet50 -b 1,8,64,256" "zoo:resnet50 -b 64,256 --profile" "zoo:mobilenetv2 -b 1,8,64 --profile" "zoo:yolov8n?size=640 -b 1,8,64 --profile" "zoo:resnet50?size=1008x1600 -b 1,8 --profile"; do
      i=$((i + 1))
      echo "## batchwise bench $spec --engine cuda --precision fp16 --duration 1s --warmup 0.5s"
      # shellcheck disable=SC2086
      timeout 150 "$CLI" bench $spec --engine cuda --precision fp16 --duration 1s --warmup 0.5s --json "$WORK/fp16/$i.json" 2>&1; echo "exit $?"
    done
    tar -czf "$OUT/fp16-layers.tar.gz" -C "$WORK/fp16" .
  } >> "$OUT/fp16.txt"
fi
if [[ " $PHASES " == *" explain "* ]]; then
  {
    # The generic commands on the GPU: bench's JSON and HTML report, and explain's roofline against the GPU's ceilings.
    echo "## batchwise bench zoo:resnet50 --engine cuda -b 1,8,64 --json --report"
    timeout 120 "$CLI" bench zoo:resnet50 --engine cuda -b 1,8,64 --duration 1.5s --warmup 0.5s \
      --json "$OUT/bench-resnet50-cuda.json" --report "$OUT/bench-resnet50-cuda.html" 2>&1; echo "exit $?"
    for m in zoo:resnet50 zoo:mobilenetv2; do
      echo "## batchwise explain $m --engine cuda --batch-sizes 1,8,64,256"
      timeout 150 "$CLI" explain "$m" --engine cuda --batch-sizes 1,8,64,256 \
        --json "$OUT/explain-${m#zoo:}-cuda.json" --report "$OUT/explain-${m#zoo:}-cuda.html" 2>&1; echo "exit $?"
    done
  } >> "$OUT/explain.txt" 2>&1
fi
if [[ " $PHASES " == *" explain-study "* ]]; then
  # Issue 16 item 3: explain's error study (bench/explain-gpu.sh): ceilings and per-layer rate tables measured afresh, then
  # explain --engine cuda in fp16 and fp32 on the zoo and on the peer exports in $WORK/exports (the world phase's, or
  # WORLD_EXPORT_ONLY=1 in an earlier call), b=1..256, bounded to EXPLAIN_BUDGET (520) s. Table in $OUT/explain-study/table.md.
  CLI="$CLI" OUT="$OUT/explain-study" WORLD_EXPORTS="$WORK/exports" BUDGET="${EXPLAIN_BUDGET:-520}" \
    timeout "${EXPLAIN_LIMIT:-580}" bash "$REPO/bench/explain-gpu.sh" > "$OUT/explain-study.txt" 2>&1
  echo "explain-study exit $?" >> "$OUT/explain-study.txt"
fi
if [[ " $PHASES " == *" transfers "* ]]; then
  # End-to-end runs (--transfers: H2D from page-locked memory + plan + D2H, every run) against compute-only runs, at
  # concurrency 1 and 2 (two execution contexts, two streams: one context's copies overlap the other's compute).
  # docs/transfers.md says how to read it; transfers-summary.txt has one line per point.
  timeout "${TRANSFERS_TESTS_LIMIT:-120}" "$TESTS" -parallelMode none -class '*TransferGpuTests' -noColor > "$OUT/transfers-tests.log" 2>&1
  echo "transfer tests exit $?" >> "$OUT/transfers-tests.log"
  {
    for spec in "zoo:resnet50 -b 1,8,64,256 --precision fp32" "zoo:resnet50 -b 1,8,64,256 --precision fp16" "zoo:mobilenetv2 -b 1,64,256 --precision fp16"; do
      for mode in compute transfers; do
        flag=""; [ "$mode" = transfers ] && flag="--transfers"
        name="transfers-${spec%% *}-${spec##* }-$mode"; name=${name//:/-}
        echo "## batchwise bench $spec -c 1,2 --engine cuda $flag --duration 1.5s --warmup 0.5s"
        # shellcheck disable=SC2086
        timeout 150 "$CLI" bench $spec -c 1,2 --engine cuda $flag --duration 1.5s --warmup 0.5s --csv "$OUT/$name.csv" --json "$OUT/$name.json" 2>&1; echo "exit $?"
      done
    done
  } > "$OUT/transfers.txt" 2>&1
  {
    echo "model precision mode batch conc samples/s latency_mean_ms h2d_ms compute_ms d2h_ms"
    for f in "$OUT"/transfers-zoo-*.csv; do
      [ -f "$f" ] || continue
      mode=${f%.csv}; precision=${mode%-*}; mode=${mode##*-}; precision=${precision##*-}
      awk -F, -v mode="$mode" -v precision="$precision" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        { printf "%s %s %s %s %s %.0f %.3f %s %s %s\n", $c["model"], precision, mode, $c["batch_size"], $c["concurrency"], $c["throughput_samples_per_s"], $c["latency_mean_ms"],
          ($c["h2d_mean_ms"] == "" ? "-" : $c["h2d_mean_ms"]), ($c["compute_mean_ms"] == "" ? "-" : $c["compute_mean_ms"]), ($c["d2h_mean_ms"] == "" ? "-" : $c["d2h_mean_ms"]) }' "$f"
    done | sort -k1,1 -k2,2 -k4,4n -k3,3 -k5,5n
  } | { if command -v column > /dev/null; then column -t; else cat; fi; } > "$OUT/transfers-summary.txt"
  cat "$OUT/transfers-summary.txt"
fi
if [[ " $PHASES " == *" shapes "* ]]; then
  # Issue #11: plan builds per new batch size and image size, cold start (empty kernel cache, warm cache, saved engine),
  # the cost of padding to a batch profile, and offline throughput at the fixed shapes. Everything in $OUT/shapes.txt,
  # JSON beside it. Kernels are cached in $BATCHWISE_CACHE_DIR, emptied where a cold start is measured.
  export BATCHWISE_CACHE_DIR="$WORK/cache"
  S="$OUT/shapes"; mkdir -p "$S"
  # Issue #11's GPU tests first (a saved engine's outputs equal a fresh build's row for row, asks cuDNN nothing while
  # planning, reports its spans; padded batches; new batch octaves from the nearest known choices).
  timeout "${SHAPES_TESTS_LIMIT:-240}" "$TESTS" -parallelMode none -class '*ShapeGpuTests' -noColor > "$OUT/shapes-tests.log" 2>&1
  echo "shapes GPU tests: exit $? ($(grep -E 'Total:' "$OUT/shapes-tests.log" | tail -1))" >> "$OUT/devices.txt"
  wall() { local t0 t1; t0=$(date +%s.%N); "$@"; local rc=$?; t1=$(date +%s.%N); echo "process wall $(awk "BEGIN { printf \"%.3f\", $t1 - $t0 }") s, exit $rc"; }
  {
    rm -rf "$WORK/cache"
    echo "## cold start, empty kernel cache: bench zoo:resnet50 --engine cuda --precision fp16 -b 1"
    wall timeout 120 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.5s --warmup 0.2s --verbose --json "$S/cold-empty.json" 2>&1
    echo "## cold start, warm kernel cache (same command again)"
    wall timeout 120 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.5s --warmup 0.2s --verbose --json "$S/cold-cached.json" 2>&1
    [ "${SHAPES_LITE:-0}" = 1 ] || echo "## every batch 1..64 in one process (a plan each)"
    [ "${SHAPES_LITE:-0}" = 1 ] || timeout 240 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b "$(seq -s, 1 64)" --duration 0.3s --warmup 0.1s --max-windows 3 --json "$S/b1-64.json" 2>&1 | tail -8
    if [ "${SHAPES_LITE:-0}" != 1 ]; then
      # The same sweep with a new batch octave's convolutions started from the nearest known octave's cuDNN choices
      # (no heuristics query): plan builds and throughput per batch against the default (octave) sweep above.
      echo "## every batch 1..64 in one process, BATCHWISE_CONV_CHOICES=nearest"
      BATCHWISE_CONV_CHOICES=nearest timeout 240 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b "$(seq -s, 1 64)" --duration 0.3s --warmup 0.1s --max-windows 3 --json "$S/b1-64-nearest.json" 2>&1 | tail -8
      if [ -n "$PY" ]; then
        echo "## per batch: plan build ms and img/s, octave (default) vs nearest"
        "$PY" - "$S/b1-64.json" "$S/b1-64-nearest.json" <<'PYEOF'
import json, statistics, sys
runs = [{p["batch_size"]: p for p in json.load(open(f))["points"]} for f in sys.argv[1:3]]
def build_ms(p): return sum(b["seconds"] for b in p.get("plan_builds") or []) * 1000
print("b  octave_plan_ms nearest_plan_ms octave_img_s nearest_img_s ratio")
for b in sorted(runs[0]):
    o, n = runs[0][b], runs[1].get(b)
    if n is None: continue
    print(b, f"{build_ms(o):.1f}", f"{build_ms(n):.1f}", f"{o['throughput_samples_per_s']:.0f}", f"{n['throughput_samples_per_s']:.0f}", f"{n['throughput_samples_per_s'] / o['throughput_samples_per_s']:.3f}")
for name, r in zip(("octave", "nearest"), runs):
    ms = [build_ms(p) for p in r.values() if p.get("plan_builds")]
    print(name, "plans", len(ms), "median", f"{statistics.median(ms):.1f}" if ms else "-", "ms; max", f"{max(ms):.1f}" if ms else "-")
PYEOF
      fi
      echo "## build's profile plans (64, 32, ... 1) with BATCHWISE_CONV_CHOICES=nearest (the default build follows)"
      BATCHWISE_CONV_CHOICES=nearest timeout 180 "$CLI" build zoo:resnet50 --engine cuda --precision fp16 --batch-profile 1,2,4,8,16,32,64 -o "$WORK/r50-nearest.bwengine" 2>&1 | tail -9
    fi
    echo "## build a saved engine"
    wall timeout 180 "$CLI" build zoo:resnet50 --engine cuda --precision fp16 --batch-profile 1,2,4,8,16,32,64 -o "$WORK/r50.bwengine" 2>&1
    ls -l "$WORK/r50.bwengine"
    rm -rf "$WORK/cache"
    echo "## cold start from the saved engine, empty kernel cache"
    wall timeout 120 "$CLI" bench "$WORK/r50.bwengine" --engine cuda -b 1 --duration 0.5s --warmup 0.2s --verbose --json "$S/cold-saved.json" 2>&1
    echo "## cold start from the saved engine, again (the file in the page cache either way)"
    wall timeout 120 "$CLI" bench "$WORK/r50.bwengine" --engine cuda -b 1 --duration 0.5s --warmup 0.2s --verbose --json "$S/cold-saved-2.json" 2>&1 | grep -E 'cold start|process wall|plan built'
    if [ "${SHAPES_LITE:-0}" != 1 ]; then
      echo "## padding: b=33 padded to 64 against b=64 and an exact b=33"
      timeout 120 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 --batch-profile 1,8,32,64 -b 33,64 --duration 1s --warmup 0.3s --json "$S/padded.json" 2>&1 | tail -6
      timeout 120 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 33 --duration 1s --warmup 0.3s --json "$S/exact33.json" 2>&1 | tail -4
      echo "## offline throughput at the fixed shapes (this build)"
      timeout 150 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --duration 1s --warmup 0.5s --json "$S/fixed-new.json" 2>&1 | tail -10
      if [ -x "$WORK/cli-old/Batchwise.Cli" ]; then
        echo "## offline throughput at the fixed shapes (the build before this work, same machine, same run)"
        BATCHWISE_CACHE_DIR="$WORK/cache-old" timeout 150 "$WORK/cli-old/Batchwise.Cli" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --duration 1s --warmup 0.5s --json "$S/fixed-old.json" 2>&1 | tail -10
      fi
      if [ -x "$WORK/cli-old/Batchwise.Cli" ] && [ "${PROFILES:-0}" = 1 ]; then
        echo "## per-layer profiles at b=64 and 256, this build and the one before (layers.csv beside the JSON)"
        timeout 120 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 64,256 --profile --duration 0.5s --warmup 0.2s --json "$S/profile-new.json" 2>&1 | grep -E "slowest|^│ +[0-9]+ " | head -24
        BATCHWISE_CACHE_DIR="$WORK/cache-old" timeout 120 "$WORK/cli-old/Batchwise.Cli" bench zoo:resnet50 --engine cuda --precision fp16 -b 64,256 --profile --duration 0.5s --warmup 0.2s --json "$S/profile-old.json" 2>&1 | grep -E "slowest|^│ +[0-9]+ " | head -24
      fi
    fi
    if [ -n "$PY" ] && [ "${SHAPES_LITE:-0}" != 1 ]; then
      echo "## YOLOv8n exported with dynamic height and width: plans for 10 x 10 image sizes (320..608, step 32)"
      PYTHONPATH="$REPO/bench/peers" "$PY" "$REPO/bench/peers/yolov8n.py" --export-any-size "$WORK/yolov8n-any.onnx" --size 640 2>&1 | tail -2
      wall timeout 240 "$CLI" build "$WORK/yolov8n-any.onnx" --engine cuda --precision fp16 --batch-profile 1 \
        --shape-profile images:1x3x320x320..1x3x608x608:32 -o "$WORK/yolo-any.bwengine" 2> "$S/yolo-builds.txt"
      tail -3 "$S/yolo-builds.txt"
      echo "## compare the dynamic YOLOv8n against ONNX Runtime at 480x640"
      timeout 120 "$CLI" compare "$WORK/yolov8n-any.onnx" --engines ort,cuda --shape height=480 --shape width=640 2>&1 | tail -6
    fi
  } > "$OUT/shapes.txt" 2>&1
fi
if [[ " $PHASES " == *" serve "* ]]; then
  # Issue #11 served: ResNet-50 fp16 with batch profiles (powers of two up to 64), two instances; load at c=16 and c=64
  # over gRPC; the plan-build counter read before and after the load (no build after ready). Issue #12's served numbers
  # come from the same setup. Everything in $OUT/serve.txt. SERVE_ARGS adds serve options to the main server and the
  # --instances N one (e.g. SERVE_ARGS="--pipeline-depth 2" for the A/B against a run without).
  export BATCHWISE_CACHE_DIR="$WORK/cache"
  # Waits up to 120 s for the server on port 18000 to say it is ready.
  serve_ready() {
    for _ in $(seq 1 120); do
      "$PY" -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:18000/v2/health/ready', timeout=2).status == 200 else 1)" 2>/dev/null && return 0
      sleep 1
    done
    return 1
  }
  metric() { "$PY" - "$1" "$2" <<'PYEOF'
import sys, urllib.request
url, name = sys.argv[1], sys.argv[2]
text = urllib.request.urlopen(url, timeout=10).read().decode()
vals = [l for l in text.splitlines() if l.startswith(name) and not l.startswith("#")]
print("\n".join(vals) if vals else name + " (absent)")
PYEOF
  }
  {
    # SERVE_MAIN=0 skips the main servers and the offline references: the c=1 servers alone.
    if [ "${SERVE_MAIN:-1}" = 1 ]; then
      echo "## serve options added (SERVE_ARGS): ${SERVE_ARGS:-none}"
      "$CLI" serve zoo:resnet50 --engine cuda --precision fp16 --max-batch-size 64 --instances 2 --max-queue-delay-us 200 \
        --http-port 18000 --grpc-port 18001 ${SERVE_ARGS:-} > "$WORK/serve.log" 2>&1 &
      SERVER=$!
      serve_ready
      echo "## server log (warm-up)"; cat "$WORK/serve.log"
      METRICS=http://127.0.0.1:18000/metrics
      "$PY" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8002/metrics', timeout=2)" 2>/dev/null && METRICS=http://127.0.0.1:8002/metrics
      echo "## plan builds when ready"; metric "$METRICS" batchwise_plan_builds_total
      echo "## batchwise load 127.0.0.1:18001 --protocol grpc -m resnet50 -c 1,16,64,256"
      timeout 200 "$CLI" load 127.0.0.1:18001 --protocol grpc -m resnet50 -c 1,16,64,256 --duration 4 --warmup 1 2>&1 | tail -12
      echo "## batchwise load 127.0.0.1:18001 --protocol grpc -m resnet50 -c 16,64,256,512 --shared-memory system (inputs by reference, page-locked and copied to the device in place)"
      timeout 150 "$CLI" load 127.0.0.1:18001 --protocol grpc -m resnet50 -c 16,64,256,512 --shared-memory system --duration 4 --warmup 1 2>&1 | tail -10
      echo "## server log: page-locking of the load's regions"; grep -h "page-locked" "$WORK/serve.log" | head -4
      echo "## batchwise load 127.0.0.1:18001 --protocol grpc -m resnet50 -c 16,64,256 --shared-memory cuda (inputs in the load process's device memory, copied device to device; BATCHWISE_GATHER=${BATCHWISE_GATHER:-copies}: kernel = a batch's rows in one launch each way, copies = one copy a row)"
      timeout 150 "$CLI" load 127.0.0.1:18001 --protocol grpc -m resnet50 -c 16,64,256,512 --shared-memory cuda --duration 4 --warmup 1 2>&1 | tail -10
      echo "## batchwise load http://127.0.0.1:18000 -m resnet50 -c 16,64,256"
      timeout 150 "$CLI" load http://127.0.0.1:18000 -m resnet50 -c 16,64,256 --duration 4 --warmup 1 2>&1 | tail -8
      echo "## plan builds after the load"; metric "$METRICS" batchwise_plan_builds_total
      echo "## offline in the same run (issue 12's references): --transfers b=1 c=1 and b=64 c=2"
      timeout 120 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 --transfers -b 1,64 -c 1,2 --duration 1s --warmup 0.5s \
        --csv "$OUT/serve-offline.csv" 2>&1 | tail -16
      echo "## offline compute-only in the same run (the CUDA shared-memory reference): b=64 c=1 and c=2, inputs already on the device"
      timeout 120 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 64 -c 1,2 --duration 1s --warmup 0.5s \
        --csv "$OUT/serve-offline-compute.csv" 2>&1 | tail -8
      echo "## executed batch sizes and compute time"; metric "$METRICS" batchwise_inference_batch_size_count; metric "$METRICS" batchwise_inference_compute_seconds_sum
      kill -TERM $SERVER; wait $SERVER; echo "server exit $?"
      tail -3 "$WORK/serve.log"
      if [ -n "${SERVE_MORE_INSTANCES-3}" ]; then
        # The shared-memory points again with more instances (more batches in flight to overlap copies and compute).
        n=${SERVE_MORE_INSTANCES:-3}
        "$CLI" serve zoo:resnet50 --engine cuda --precision fp16 --max-batch-size 64 --instances $n --max-queue-delay-us 200 \
          --http-port 18000 --grpc-port 18001 --metrics-port 18002 ${SERVE_ARGS:-} > "$WORK/serve-n.log" 2>&1 &
        SERVER=$!
        serve_ready
        for sm in system cuda; do
          echo "## --instances $n: batchwise load 127.0.0.1:18001 --protocol grpc -m resnet50 -c 256,512 --shared-memory $sm"
          timeout 100 "$CLI" load 127.0.0.1:18001 --protocol grpc -m resnet50 -c 256,512 --shared-memory $sm --duration 4 --warmup 1 2>&1 | tail -8
        done
        echo "## --instances $n: plan builds after the load"; metric http://127.0.0.1:18002/metrics batchwise_plan_builds_total
        kill -TERM $SERVER; wait $SERVER; echo "server (--instances $n) exit $?"
      fi
    fi
    if [ "${SERVE_C1:-1}" = 1 ]; then
      # Issue 12's c=1 target (p50 <= offline b=1 end to end + 0.25 ms) is with no queue delay: a server of its own per
      # variant (C1_VARIANTS: serve options separated by '|', e.g. "|--inline-io"; C1_SERVE_ARGS, the former knob, is
      # the single variant when C1_VARIANTS is unset), each lone-request run beside what it paid inside the server, as
      # means over that run's requests: queue (arrival at the batcher to the batch's start), request (arrival at the
      # model to its outputs), compute (the engine's part: staging, the run, the copies back).
      c1sum() { curl -s 127.0.0.1:18002/metrics | awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { printf "%.9f", s + 0 }'; }
      c1load() {
        local label=$1 q0 r0 k0 n0 q1 r1 k1 n1; shift
        q0=$(c1sum batchwise_inference_queue_seconds_sum); r0=$(c1sum batchwise_inference_request_seconds_sum)
        k0=$(c1sum batchwise_inference_compute_seconds_sum); n0=$(c1sum batchwise_inference_request_seconds_count)
        echo "## c=1, no queue delay [$variant]: $label"
        timeout 60 "$CLI" load "$@" -m resnet50 -c 1 --duration 3 --warmup 1 2>&1 | grep -E "^concurrency 1: [0-9]|Error" | head -2
        q1=$(c1sum batchwise_inference_queue_seconds_sum); r1=$(c1sum batchwise_inference_request_seconds_sum)
        k1=$(c1sum batchwise_inference_compute_seconds_sum); n1=$(c1sum batchwise_inference_request_seconds_count)
        awk -v q="$q0 $q1" -v r="$r0 $r1" -v k="$k0 $k1" -v n="$n0 $n1" 'BEGIN { split(q, Q, " "); split(r, R, " "); split(k, K, " "); split(n, N, " "); c = N[2] - N[1]; if (c > 0) printf "server, mean over %d requests: queue %.1f us, request %.1f us, compute %.1f us\n", c, (Q[2] - Q[1]) * 1e6 / c, (R[2] - R[1]) * 1e6 / c, (K[2] - K[1]) * 1e6 / c }'
      }
      IFS='|' read -r -a c1variants <<< "${C1_VARIANTS-${C1_SERVE_ARGS:-}}"
      [ ${#c1variants[@]} -eq 0 ] && c1variants=("")
      for variant in "${c1variants[@]}"; do
        "$CLI" serve zoo:resnet50 --engine cuda --precision fp16 --max-batch-size 64 --instances 2 --max-queue-delay-us 0 \
          --http-port 18000 --grpc-port 18001 --metrics-port 18002 $variant > "$WORK/serve-c1.log" 2>&1 &
        SERVER=$!
        serve_ready
        variant=${variant:-defaults}
        for sm in none system cuda; do
          c1load "batchwise load 127.0.0.1:18001 --protocol grpc --shared-memory $sm" 127.0.0.1:18001 --protocol grpc --shared-memory $sm
        done
        # The lone request with Grpc.Net.Client as the client (16 KB frames, one send each) and over HTTP, for the
        # transport's share of p50 on each path.
        c1load "... --protocol grpc --grpc-client grpc-dotnet --shared-memory none" 127.0.0.1:18001 --protocol grpc --grpc-client grpc-dotnet
        for sm in none system; do
          c1load "batchwise load 127.0.0.1:18000 --protocol http --shared-memory $sm" 127.0.0.1:18000 --protocol http --shared-memory $sm
        done
        kill -TERM $SERVER; wait $SERVER; echo "c=1 server [$variant] exit $?"
      done
    fi
  } > "$OUT/serve.txt" 2>&1
fi
if [[ " $PHASES " == *" exports "* ]]; then
  # Issue 15's suite of real exports (Hugging Face transformers from configs, timm models; random weights): each
  # through `batchwise compare --engines ort,cuda` in fp32 and fp16. Table in $OUT/exports/exports.md.
  if [ -n "$PY" ]; then
    timeout "${EXPORTS_LIMIT:-420}" "$PY" "$REPO/bench/device/real_exports.py" --cli "$CLI" --out "$OUT/exports" \
      --work "$WORK/exports" ${EXPORTS_ONLY:+--only "$EXPORTS_ONLY"} > "$OUT/exports.txt" 2>&1
    echo "exports exit $?" >> "$OUT/exports.txt"
  else
    echo "no python3: the export suite needs torch, transformers and timm" > "$OUT/exports.txt"
  fi
fi
if [[ " $PHASES " == *" transport "* ]]; then
  # Issue #12's transport target (>= 6,000 infer/s over gRPC and over HTTP): zoo:transport (one ReduceMean over float32
  # [1,3,224,224], 602 KB per request) on ort with 4 instances, `load` on the same host over gRPC and HTTP binary at
  # c=16,64,256 and with system shared memory at c=64; per point the server's CPU per request (/proc/PID/stat over the load
  # call / requests it counted) beside load's own line (its CPU per request and ceiling). Then the same gRPC/HTTP c=64
  # points with ONNX Runtime's own thread defaults (a thread per core per instance, spinning: the served default before
  # session 6), with Server GC (DOTNET_gcServer=1) and, with cli-old carried, the build before this work. About 100 s on an
  # idle 16-core host; points past TRANSPORT_LIMIT (150 s) are skipped, each load call is bounded at 30 s.
  # Everything in $OUT/transport.txt.
  {
    tick=$(getconf CLK_TCK)
    tserve() { # label, cli, env...
      local label=$1 cli=$2; shift 2
      env "$@" "$cli" serve ${TMODEL:-zoo:transport --instances 4} --http-port 18100 --grpc-port 18101 --metrics-port 18102 > "$WORK/transport-$label.log" 2>&1 &
      TSERVER=$!
      for _ in $(seq 1 60); do curl -sf -o /dev/null 127.0.0.1:18100/v2/health/ready && return 0; sleep 0.5; done
      echo "server $label did not start:"; tail -5 "$WORK/transport-$label.log"; return 1
    }
    tstop() { kill -TERM "$TSERVER" 2>/dev/null; timeout 20 tail --pid="$TSERVER" -f /dev/null || kill -KILL "$TSERVER"; wait "$TSERVER" 2>/dev/null; }
    tcpu() { awk -v t="$tick" '{ print ($14 + $15) / t }' "/proc/$TSERVER/stat"; }
    tnative() { # CPU seconds of the native (ONNX Runtime) worker threads: those with the process's own name, bar the main one
      local name s=0 t; name=$(cat "/proc/$TSERVER/comm")
      for t in /proc/"$TSERVER"/task/*; do
        [ "${t##*/}" = "$TSERVER" ] && continue
        [ "$(cat "$t/comm" 2>/dev/null)" = "$name" ] || continue
        s=$(awk -v s="$s" -v k="$tick" '{ sub(/^.*\) /, ""); print s + ($12 + $13) / k }' "$t/stat" 2>/dev/null || echo "$s")
      done
      echo "$s"
    }
    treqs() { curl -s 127.0.0.1:18102/metrics | awk 'index($0, "batchwise_inference_requests_total") == 1 { s += $NF } END { print s + 0 }'; }
    tload() { # label, cli, protocol, concurrency, shared memory, env...
      local label=$1 cli=$2 proto=$3 c=$4 shm=$5; shift 5
      local port=18100; [ "$proto" = grpc ] && port=18101
      if (( SECONDS - T0 > ${TRANSPORT_LIMIT:-150} )); then echo "$label $proto c=$c shm=$shm: skipped (the phase's ${TRANSPORT_LIMIT:-150} s are spent)"; return; fi
      local c0 r0 c1 r1 n0 n1 line
      c0=$(tcpu); n0=$(tnative); r0=$(treqs)
      line=$(env "$@" timeout 30 "$cli" load "127.0.0.1:$port" -m transport --protocol "$proto" ${GRPC_CLIENT:+--grpc-client $GRPC_CLIENT} -c "$c" --shared-memory "$shm" --warmup 1 --duration 1 --stability-tolerance 0.2 2>&1 | grep -E "^concurrency [0-9]+: [0-9]|^Error|CLIENT-BOUND" | tr '\n' ' ')
      c1=$(tcpu); n1=$(tnative); r1=$(treqs)
      echo "$label $proto${GRPC_CLIENT:+ ($GRPC_CLIENT client)} c=$c shm=$shm: $line| server $(awk -v a="$c0" -v b="$c1" -v m="$n0" -v n="$n1" -v x="$r0" -v y="$r1" 'BEGIN { if (y > x) printf "%.3f ms CPU/request (%.3f of it ONNX Runtime worker threads) over %d requests", (b - a) * 1000 / (y - x), (n - m) * 1000 / (y - x), y - x; else print "no requests" }')"
    }
    T0=$SECONDS
    echo "# transport: $(nproc) cores, $(uptime)"
    if tserve new "$CLI"; then
      for p in grpc http; do for c in 16 64 256; do tload new "$CLI" $p $c none; done; done
      tload new "$CLI" grpc 64 system
      tload new "$CLI" http 64 system
      # gRPC with the load generator's former client (Grpc.Net.Client: 16 KB frames, one send each, 8 connections)
      # against its own HTTP/2 connections above (frames up to the server's 256 KB, one connection per call in flight):
      # the client's and the server's CPU per request with each, and c=1.
      for c in 1 16 64; do GRPC_CLIENT=grpc-dotnet tload new "$CLI" grpc $c none; done
      tload new "$CLI" grpc 1 none
      tload new "$CLI" http 1 none
      tstop
    fi
    # ONNX Runtime's own thread defaults, as served before session 6: a thread per core in each of the 4 instances,
    # workers spinning (a repository whose config asks for them); the lines above have the served defaults (cores /
    # instances, no spinning: see the server log line "transport: 4 instance(s) x N intra-op thread(s) ...").
    mkdir -p "$WORK/transport-repo/transport"
    "$CLI" zoo export zoo:transport -o "$WORK/transport-repo/transport/model.onnx" > /dev/null
    echo "{ \"max_batch_size\": 32, \"instance_count\": 4, \"intra_op_threads\": $(nproc), \"intra_op_spinning\": true, \"dynamic_batching\": {} }" > "$WORK/transport-repo/transport/config.json"
    if TMODEL="--models $WORK/transport-repo" tserve ort-spinning "$CLI"; then
      for p in grpc http; do tload ort-spinning "$CLI" $p 64 none; done
      tstop
    fi
    grep -h "intra-op" "$WORK"/transport-*.log
    if tserve new-servergc "$CLI" DOTNET_gcServer=1; then
      tload new-servergc "$CLI" grpc 64 none DOTNET_gcServer=1
      tload new-servergc "$CLI" http 64 none DOTNET_gcServer=1
      tstop
    fi
    if [ -x "$WORK/cli-old/Batchwise.Cli" ] && tserve old "$WORK/cli-old/Batchwise.Cli"; then
      tload old "$WORK/cli-old/Batchwise.Cli" grpc 64 none
      tload old "$WORK/cli-old/Batchwise.Cli" http 64 none
      tstop
    fi
  } > "$OUT/transport.txt" 2>&1
fi
if [[ " $PHASES " == *" c1 "* ]]; then
  # Issue 12's lone request (c=1, no queue delay) over gRPC with the 602 KB input in the message, against HTTP: zoo:transport
  # (ort, CPU only, 1 instance) served with each transport variant in turn, C1_ROUNDS rounds (default 3) in alternation,
  # p50 of `load -c 1` over gRPC and HTTP per variant and round, and the server's mean time inside (request_us: arrival at
  # the model to its outputs; p50 minus it is what both sides' HTTP/2 or HTTP/1.1 stacks cost). Variants: the defaults
  # (64 KB receive blocks, 256 KB HTTP/2 frames), 1 MB receive blocks (Kestrel's HTTP/2 input copy takes one block per
  # round, each waiting for the frame reader: ~10 rounds per message at 64 KB, 1-2 at 1 MB), 1 MB blocks and 1 MB frames,
  # inline I/O scheduling (no thread-pool hop between a receive and what reads it), and 1 MB blocks with inline I/O.
  # About 25 s per variant and round (~6 min at 3 rounds); everything in $OUT/c1.txt.
  {
    echo "# c1: $(nproc) cores, $(uptime)"
    c1metric() { curl -s 127.0.0.1:18112/metrics | awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'; }
    for r in $(seq 1 "${C1_ROUNDS:-3}"); do
      for v in "" "--receive-block-kb 1024" "--receive-block-kb 1024 --http2-max-frame-kb 1024" "--inline-io" "--receive-block-kb 1024 --inline-io"; do
        "$CLI" serve zoo:transport --max-queue-delay-us 0 --http-port 18110 --grpc-port 18111 --metrics-port 18112 $v > "$WORK/c1-serve.log" 2>&1 &
        C1SERVER=$!
        for _ in $(seq 1 60); do curl -sf -o /dev/null 127.0.0.1:18110/v2/health/ready && break; sleep 0.5; done
        for p in grpc http grpc http; do
          port=18110; [ "$p" = grpc ] && port=18111
          s0=$(c1metric batchwise_inference_request_seconds_sum); n0=$(c1metric batchwise_inference_request_seconds_count)
          line=$(timeout 30 "$CLI" load "127.0.0.1:$port" -m transport --protocol "$p" -c 1 --warmup 1 --duration 3 2>&1 | grep -E "^concurrency [0-9]+: [0-9]|^Error" | head -1)
          s1=$(c1metric batchwise_inference_request_seconds_sum); n1=$(c1metric batchwise_inference_request_seconds_count)
          echo "round $r [${v:-defaults}] $p: $line | server request_us $(awk -v a="$s0" -v b="$s1" -v x="$n0" -v y="$n1" 'BEGIN { if (y > x) printf "%.1f", (b - a) * 1e6 / (y - x); else printf "nan" }')"
        done
        kill -TERM "$C1SERVER" 2>/dev/null; timeout 20 tail --pid="$C1SERVER" -f /dev/null || kill -KILL "$C1SERVER"; wait "$C1SERVER" 2>/dev/null
      done
    done
  } > "$OUT/c1.txt" 2>&1
fi
if [[ " $PHASES " == *" peers "* ]]; then
  # Issue #4's peer comparison: Batchwise (cuda fp32, fp16) and PyTorch (fp32, fp16 channels-last, fp16 + CUDA graph) on
  # ResNet-50 224 and 1600x1008, MobileNetV2 224, YOLOv8n 640, one GPU job at a time, in about 5 minutes; one table with
  # the ratios and the issue's targets in $OUT/peers/peers.md (and peers.json, raw logs beside them).
  if [ -n "$PY" ]; then
    timeout "${PEERS_LIMIT:-420}" "$PY" "$REPO/bench/peers/compare.py" --cli "$CLI" --python "$PY" --out "$OUT/peers" \
      --budget "${PEERS_BUDGET:-330}" > "$OUT/peers.txt" 2>&1
    echo "peers exit $?" >> "$OUT/peers.txt"
  else
    echo "peers: no python3 on this machine" > "$OUT/peers.txt"
  fi
fi
if [[ " $PHASES " == *" world "* ]]; then
  # Issue 16's peer table across architectures (bench/peers/world.py): 13 timm models and 6 Hugging Face transformers
  # (seq 128) exported here (cached in $WORK/exports, shared with the exports phase), Batchwise cuda fp16 against
  # PyTorch's best (fp16 eager and CUDA graph; channels-last for timm, SDPA for transformers) at b=1 and 64, one GPU job
  # at a time, then the per-layer profiles (b=64, top 15 layers) of the WORLD_PROFILE (3) models with the lowest ratios.
  # About 8 minutes (WORLD_BUDGET 450 s); WORLD_MODELS picks a subset. Table in $OUT/world/world.md (and world.json).
  # WORLD_EXPORT_ONLY=1 only exports (a call of its own, ~1-2 min; $WORK stays on the warm machine for the next call).
  if [ -n "$PY" ]; then
    export BATCHWISE_CACHE_DIR="${BATCHWISE_CACHE_DIR:-$WORK/cache}"
    timeout "${WORLD_LIMIT:-540}" "$PY" "$REPO/bench/peers/world.py" --cli "$CLI" --python "$PY" --out "$OUT/world" \
      --work "$WORK/exports" --budget "${WORLD_BUDGET:-450}" --profile-worst "${WORLD_PROFILE:-3}" \
      ${WORLD_MODELS:+--models "$WORLD_MODELS"} ${WORLD_EXPORT_ONLY:+--export-only} > "$OUT/world.txt" 2>&1
    echo "world exit $?" >> "$OUT/world.txt"
  else
    echo "world: no python3 on this machine" > "$OUT/world.txt"
  fi
fi
ls -la "$OUT"
# Everything in one archive too: the device tool brings back at most eight files.
tar -czf /tmp/batchwise-results.tgz -C "$OUT" . && mv /tmp/batchwise-results.tgz "$OUT/results.tgz"
