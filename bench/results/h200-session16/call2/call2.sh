#!/usr/bin/env bash
# Session 16, call 2 (code of .device/rev): (1) the own small-row product (BATCHWISE_SMALL_MATMUL, default own) for
# ResNet-50's classifier at b=1 against cuBLASLt (=cublaslt) and phase 1 (b8b556f), b=1 alternating, then the fixed
# shapes; small convolutions as one GEMM (BATCHWISE_CONV_GEMM_ROWS, default 256) against cuDNN (=0); (2) depthwise layers reading their input chain and writing their QuantizeLinear (c33eaea): MobileNetV2 int8
# and fp16 against the build before (869959b, "base"); an int8 layer profile; compare against ORT; (3) GPU test classes.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 570 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
rm -rf "$WORK/cli" "$WORK/tests" "$WORK/old" "$WORK/base" && tar -xJf .device/cli-full.tar.xz -C "$WORK"
for d in tests old base; do cp -r "$WORK/cli" "$WORK/$d"; done
tar -xJf .device/testdiff.tar.xz -C "$WORK/tests" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old" && tar -xJf .device/cli-base.tar.xz -C "$WORK/base" && tar -xJf .device/node.tar.xz -C "$WORK"
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli; BASE=$WORK/base/Batchwise.Cli; TESTS=$WORK/tests/Batchwise.Cuda.Tests
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev)"
q() { local tag=$1 lim; lim=$(lim "$2"); shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|8|32|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-60 | tr '\n' ';')"; }
B1="bench zoo:resnet50 --engine cuda --precision fp16"
q warm-new 30 "$CLI" $B1 -b 1 --duration 0.3s --warmup 0.1s
q warm-old 30 "$OLD" $B1 -b 1 --duration 0.3s --warmup 0.1s
for i in 1 2; do
  q b1-new-$i 20 "$CLI" $B1 -b 1 --json "$R/b1-new-$i.json"
  q b1-lib-$i 20 env BATCHWISE_SMALL_MATMUL=cublaslt "$CLI" $B1 -b 1 --json "$R/b1-lib-$i.json"
  q b1-nogemm-$i 20 env BATCHWISE_CONV_GEMM_ROWS=0 "$CLI" $B1 -b 1 --json "$R/b1-nogemm-$i.json"
  q b1-old-$i 20 "$OLD" $B1 -b 1 --json "$R/b1-old-$i.json"
done
q fixed-new 45 "$CLI" $B1 -b 1,8,64,256 --json "$R/fixed-new.json"
q fixed-old 45 "$OLD" $B1 -b 1,8,64,256 --json "$R/fixed-old.json"
q b8-rows0 25 env BATCHWISE_CONV_GEMM_ROWS=0 "$CLI" $B1 -b 2,4,8 --json "$R/b8-rows0.json"
q b8-rows2048 25 env BATCHWISE_CONV_GEMM_ROWS=2048 "$CLI" $B1 -b 2,4,8 --json "$R/b8-rows2048.json"
q b1-profile 30 "$CLI" $B1 -b 1,8 --profile
timeout "$(lim 60)" "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx" > "$R/m2q-optimize.txt" 2>&1; t "optimize mobilenetv2 int8 exit $?"
I8="env BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
q m2q-new 90 $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --profile --json "$R/m2q-new.json"
q m2q-base 60 $I8 "$BASE" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --json "$R/m2q-base.json"
q m2-new 40 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --json "$R/m2-new.json"
q m2-base 40 "$BASE" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 1,64,256 --json "$R/m2-base.json"
q m2q-float-new 40 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64 --json "$R/m2q-float-new.json"
q m2q-compare 60 $I8 "$CLI" compare "$WORK/m2q.onnx" --engines ort,cuda --precision fp16 -b 8
CLASSES="QuantizedModelGpuTests SmallRowsGpuTests KernelCompileTests GroupedConvGpuTests KernelCaseGpuTests ModelGpuTests MlpGpuTests OperatorCaseGpuTests NodeGpuTests" \
  TESTS=$TESTS OUT=$R/gpu LIMIT=120 DEADLINE=$(( $(left) - 15 )) BATCHWISE_ONNX_NODE_TESTS=$WORK/node bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
t "done"
cd "$OUT" && tar -cJf r.tar.xz r && cp r/log.txt log.txt && rm -rf r
