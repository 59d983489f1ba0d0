#!/usr/bin/env bash
# Session 16, call 3 (code of .device/rev, the final engine code of the session): ResNet-50 fp16 against phase 1
# (b8b556f) at the fixed shapes and b=1 alternating (issue 11's last point; the own small-row product on, the small
# convolutions as one GEMM reverted); MobileNetV2 int8 against its fp16 in the same call (issue 19: depthwise layers
# reading their 8-bit input through a 256-entry table and writing Q -> DQ -> Clip -> Q as 8 bits); the GPU test classes.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 470 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
rm -rf "$WORK/cli" "$WORK/tests" "$WORK/old" && tar -xJf .device/cli-full.tar.xz -C "$WORK"
for d in tests old; do cp -r "$WORK/cli" "$WORK/$d"; done
tar -xJf .device/testdiff.tar.xz -C "$WORK/tests" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old" && tar -xJf .device/node.tar.xz -C "$WORK"
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli; TESTS=$WORK/tests/Batchwise.Cuda.Tests
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev)"
q() { local tag=$1 lim; lim=$(lim "$2"); shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|8|32|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-60 | tr '\n' ';')"; }
B1="bench zoo:resnet50 --engine cuda --precision fp16"
q warm-new 30 "$CLI" $B1 -b 1 --duration 0.3s --warmup 0.1s
q warm-old 30 "$OLD" $B1 -b 1 --duration 0.3s --warmup 0.1s
q fixed-new 40 "$CLI" $B1 -b 1,8,64,256 --json "$R/fixed-new.json"
q fixed-old 40 "$OLD" $B1 -b 1,8,64,256 --json "$R/fixed-old.json"
for i in 1 2; do
  q b1-new-$i 20 "$CLI" $B1 -b 1 --json "$R/b1-new-$i.json"
  q b1-old-$i 20 "$OLD" $B1 -b 1 --json "$R/b1-old-$i.json"
done
timeout "$(lim 60)" "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx" > "$R/m2q-optimize.txt" 2>&1; t "optimize mobilenetv2 int8 exit $?"
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
q m2q-new 100 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --profile --json "$R/m2q-new.json"
q m2-new 40 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --json "$R/m2-new.json"
q m2q-compare 50 $I8 "$CLI" compare "$WORK/m2q.onnx" --engines ort,cuda --precision fp16 -b 8
CLASSES="QuantizedModelGpuTests KernelCaseGpuTests ModelGpuTests NodeGpuTests OperatorCaseGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 10 )) BATCHWISE_ONNX_NODE_TESTS=$WORK/node bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
t "done"
cd "$OUT" && tar -cJf r.tar.xz r && cp r/log.txt log.txt && rm -rf r
