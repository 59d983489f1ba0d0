#!/usr/bin/env bash
# What was built without a GPU and still needs one (session 10 had no device time: its budget was spent before it
# began). One device call per CALL, each <= ~560 s, from a carried publish (.device/tests.tar.xz + .device/cli-diff.tar.xz,
# made as bench/device/run.sh's header says). Results under $OUT/r, packed into $OUT/r.tgz.
#   CALL=a bash bench/device/pending.sh   # issue 11: YOLOv8n 100 image sizes; issue 16: own stem kernel A/B; GPU tests of the new code
#   CALL=b bash bench/device/pending.sh   # issue 12: served CUDA shared memory, segment-copy gather vs per-row copies (run.sh serve phase twice)
#   CALL=c bash bench/device/pending.sh   # issue 16 item 3: explain's error study (per-layer rate tables) on the zoo and five peer exports
#   CALL=d bash bench/device/pending.sh   # issue 16 rows (ViT-S, DeiT-S, HF ViT, BERT after the GELU fix), issue 19 int8 ceilings/explain/compare
#   CALL=e bash bench/device/pending.sh   # every GPU test (about 330-540 s)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/device-out}; R=$OUT/r; mkdir -p "$R"; WORK=${WORK:-/tmp/bw}; mkdir -p "$WORK"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
if [ ! -x "$WORK/cli/Batchwise.Cli" ] || [ .device/cli-diff.tar.xz -nt "$WORK/cli/Batchwise.Cli" ]; then
  tar -xJf .device/tests.tar.xz -C "$WORK" && rm -rf "$WORK/cli" && cp -r "$WORK/tests" "$WORK/cli" && tar -xJf .device/cli-diff.tar.xz -C "$WORK/cli"
fi
CLI=$WORK/cli/Batchwise.Cli; TESTS=$WORK/tests/Batchwise.Cuda.Tests
export BATCHWISE_CACHE_DIR=$WORK/cache BATCHWISE_REPORT_DIR=$R BATCHWISE_REQUIRE_GPU=1 DOTNET_CLI_TELEMETRY_OPTOUT=1
t "call ${CALL:-?} on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
median_builds() { python3 - "$1" <<'PY'
import re, statistics, sys
ms = [float(m) for m in re.findall(r"plan built in ([0-9.]+) ms", open(sys.argv[1]).read())]
print(f"plans {len(ms)}; median of plans 2..: {statistics.median(ms[1:]) if len(ms) > 1 else 'n/a'} ms; first {ms[0] if ms else 'n/a'} ms; max of rest {max(ms[1:]) if len(ms) > 1 else 'n/a'} ms")
PY
}
case "${CALL:-}" in
a)
  PYTHONPATH=bench/peers timeout 120 python3 bench/peers/yolov8n.py --export-any-size "$WORK/yolov8n-any.onnx" --size 640 > "$R/yolo-export.log" 2>&1
  timeout 150 "$CLI" build "$WORK/yolov8n-any.onnx" --engine cuda --precision fp16 --batch-profile 1 \
    --shape-profile images:1x3x320x320..1x3x608x608:32 -o "$WORK/yolo-any.bwengine" -v > "$R/yolo-builds.txt" 2>&1
  t "yolo 100 sizes (target <= 20 ms): $(median_builds "$R/yolo-builds.txt")"
  timeout 120 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,64,256 --profile --json "$R/r50-cudnn.json" > "$R/r50-cudnn.txt" 2>&1
  BATCHWISE_STEM_CONV=own timeout 120 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,64,256 --profile --json "$R/r50-own.json" > "$R/r50-own.txt" 2>&1
  t "stem A/B done (exit $?)"
  timeout 200 "$TESTS" -parallelMode none -class '*StemConvGpuTests' -class '*GroupedConvGpuTests' -class '*StagedGpuTests' -class '*KernelCompileTests' -class '*CeilingsGpuTests' -noColor > "$R/gpu-tests-new.log" 2>&1
  t "new GPU tests exit $? ($(grep -E 'total:|failed:' "$R/gpu-tests-new.log" | tr '\n' ' '))"
  ;;
b)
  # run.sh's serve phase twice: the segment-copy kernel (BATCHWISE_GATHER=kernel) and per-row copies (the default); compare --shared-memory cuda at
  # c=256/512 with the same run's compute-only b=64 c=2 line (target >= 90%).
  cp bench/device/run.sh .device/run.sh
  BATCHWISE_GATHER=kernel PHASES=serve OUT=$R/kernel WORK=$WORK timeout 270 bash .device/run.sh > "$R/serve-kernel.log" 2>&1
  BATCHWISE_GATHER=copies PHASES=serve OUT=$R/copies WORK=$WORK timeout 270 bash .device/run.sh > "$R/serve-copies.log" 2>&1
  t "serve A/B done"
  ;;
c)
  python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world-x" --work "$WORK/exports" --export-only --jobs 6 --export-limit 200 \
    --models resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016 > "$R/exports.log" 2>&1
  t "exports"
  left=$(( 570 - ($(date +%s) - start) ))
  CLI="$CLI" OUT="$R/explain-study" WORLD_EXPORTS="$WORK/exports" BUDGET=$(( left - 30 )) timeout "$left" bash bench/explain-gpu.sh > "$R/explain-study.txt" 2>&1
  t "explain study exit $?"
  ;;
d)
  python3 bench/peers/world.py --cli "$CLI" --python python3 --out "$R/world" --work "$WORK/exports" --budget 300 \
    --models vit_small_patch16_224,deit_small_patch16_224,vit-hf,bert > "$R/world.log" 2>&1
  t "world rows exit $?"
  timeout 60 "$CLI" devices --ceilings --recalibrate > "$R/ceilings.txt" 2>&1
  timeout 90 "$CLI" explain zoo:resnet50 --engine cuda --precision int8 -b 1,64,256 --json "$R/r50-int8-explain.json" > "$R/r50-int8-explain.txt" 2>&1
  timeout 60 "$CLI" compare zoo:resnet50 --engines ort,cuda --precision int8 -b 8 > "$R/r50-int8-compare.txt" 2>&1
  t "int8 explain/compare done"
  ;;
e)
  # Every GPU test but the slow probes (they ran in earlier sessions; the int8 layer cases run in child processes).
  timeout 540 "$TESTS" -parallelMode none -class- '*NodeGpuTests' -class- '*Int8ProbeGpuTests' -class- '*ConvFusionProbeGpuTests' -noColor > "$R/gpu-tests.log" 2>&1
  t "GPU tests exit $? ($(grep -E 'total:|failed:' "$R/gpu-tests.log" | tr '\n' ' '))"
  ;;
*) echo "CALL=a|b|c|d|e (see the header)" >&2; exit 2 ;;
esac
cd "$OUT" && tar -czf r.tgz r && t "packed"
