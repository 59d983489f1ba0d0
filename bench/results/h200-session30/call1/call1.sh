#!/usr/bin/env bash
# Session 30, call 1 — PREPARED, NOT RUN (no device machine was lent in session 30). On a publish of main
# (`bash bench/device/publish.sh`) with 1c9ed43's Batchwise.Cuda.dll as the base (session 29's last engine code:
# `bash bench/device/publish.sh --overlay 1c9ed43 cli-base.tar.xz`): session 30's engine changes, each against the base
# in the same call.
# - GPU classes: KernelCompile (NVRTC compiles the reductions that read int8 through their DequantizeLinear), KernelCase
#   and Model (the float depthwise kernel now adds its bias; reductions read a ReLU through), OperatorCase (every
#   operator's cases, the Transpose through tiles among them).
# - ConvNeXt-T fp32 b=1/64 (its 44 Transposes on the tiled kernel: 0.327 of 1.649 ms at b=1 in session 23's profile)
#   and fp16 b=1/64 (its LayerNorms read the depthwise output: no pass adding the bias first); EfficientNet-B0 fp16
#   b=1/4/64 (squeeze-excite means read through the SiLU); new and base in alternation, a profile of each at b=1.
# - ResNet-50 int8 (QDQ) b=256 with a profile (the global pooling reads the int8 bytes: 0.058 ms for the pair before),
#   new and base; `--precision int8 --int8-activations symmetric` on the float model at b=1/256 (the scheme on load).
# - BERT (zoo) as a dynamic int8 export (`optimize --int8-dynamic`): its MatMulIntegers on cuBLASLt's int8 tensor cores
#   (base: one thread an output), against fp16 and ORT.
# - explain's GPU rows that failed in session 24 for these models: convnext_tiny fp32, efficientnet_b0 fp16.
source bench/device/call-lib.sh 545
unpack tests base || { pack; exit 1; }
PEERS=convnext_tiny,efficientnet_b0
mkdir -p "$R/exports"
timeout 150 python3 bench/peers/world.py --export-only --work "$WORK/exports" --out "$R/exports" --models $PEERS --jobs 2 > "$R/exports.log" 2>&1 &
exports=$!
CLASSES="KernelCompileTests DynamicInt8GpuTests QOperatorGpuTests Int8PrecisionGpuTests KernelCaseGpuTests ModelGpuTests OperatorCaseGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=60 DEADLINE=120 bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
I8="env BATCHWISE_INT8=on"
q r50q-opt 60 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 --no-verify -o "$WORK/r50q.onnx"
q r50q-prof 50 $I8 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50q-prof.json"
q r50q-base-prof 50 $I8 "$BASE" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --duration 300ms --json "$R/r50q-base-prof.json"
q r50-int8-sym 70 "$CLI" bench zoo:resnet50 --engine cuda --precision int8 --int8-activations symmetric -b 1,256 --duration 300ms --json "$R/r50-int8-sym.json"
q bertd-opt 40 "$CLI" optimize zoo:bert --int8-dynamic --no-verify -o "$WORK/bertd.onnx"
q bertd 40 "$CLI" bench "$WORK/bertd.onnx" --engine cuda --precision fp16 -b 1,32 --duration 300ms --json "$R/bertd.json"
q bertd-base 40 "$BASE" bench "$WORK/bertd.onnx" --engine cuda --precision fp16 -b 1,32 --duration 300ms --json "$R/bertd-base.json"
q bertd-cmp 40 "$CLI" compare "$WORK/bertd.onnx" --engines ort,cuda --precision fp16 -b 4
q bert16 30 "$CLI" bench zoo:bert --engine cuda --precision fp16 -b 1,32 --duration 300ms --json "$R/bert16.json"
wait $exports
t "exports: $(ls "$WORK"/exports/*/model.onnx 2>/dev/null | wc -l) models"
C=$WORK/exports/convnext_tiny/model.onnx
E=$WORK/exports/efficientnet_b0/model.onnx
for round in 1 2; do
  q cnx32-$round 30 "$CLI" bench "$C" --engine cuda -b 1,64 --duration 300ms --json "$R/cnx32-$round.json"
  q cnx32-base-$round 30 "$BASE" bench "$C" --engine cuda -b 1,64 --duration 300ms --json "$R/cnx32-base-$round.json"
  q cnx16-$round 25 "$CLI" bench "$C" --engine cuda --precision fp16 -b 1,64 --duration 300ms --json "$R/cnx16-$round.json"
  q cnx16-base-$round 25 "$BASE" bench "$C" --engine cuda --precision fp16 -b 1,64 --duration 300ms --json "$R/cnx16-base-$round.json"
  q eff16-$round 25 "$CLI" bench "$E" --engine cuda --precision fp16 -b 1,4,64 --duration 300ms --json "$R/eff16-$round.json"
  q eff16-base-$round 25 "$BASE" bench "$E" --engine cuda --precision fp16 -b 1,4,64 --duration 300ms --json "$R/eff16-base-$round.json"
done
q cnx32-prof 30 "$CLI" bench "$C" --engine cuda -b 1 --profile --duration 300ms --json "$R/cnx32-prof.json"
q eff16-prof 30 "$CLI" bench "$E" --engine cuda --precision fp16 -b 4 --profile --duration 300ms --json "$R/eff16-prof.json"
for m in convnext_tiny:fp32 efficientnet_b0:fp16; do
  name=${m%%:*}; p=${m##*:}
  q explain-$name-$p 45 "$CLI" explain "$WORK/exports/$name/model.onnx" --engine cuda --precision $p -b 1,2,4,8,16,32,64,128,256 --duration 300ms --json "$R/explain-$name-$p.json"
done
pack
