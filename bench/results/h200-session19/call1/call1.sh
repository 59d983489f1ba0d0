#!/usr/bin/env bash
# Session 19, call 1: issue 12's points from the current build (run.sh phases serve, transport; c=1 servers with the
# defaults and with --inline-io), then MobileNetV2 int8 with the 1x1 layers on cuBLASLt (BATCHWISE_INT8_POINTWISE=gemm)
# against cuDNN's graph engines, alternating, fp16 in the same call.
source bench/device/call-lib.sh 555
unpack || exit 1
cp bench/device/run.sh .device/run.sh
PHASES="serve transport" SERVE_MORE_INSTANCES="" C1_VARIANTS="|--inline-io" TRANSPORT_LIMIT=110 OUT="$R/run" WORK="$WORK" CLI="$CLI" \
  timeout "$(lim 330)" bash .device/run.sh > "$R/run.log" 2>&1
t "run.sh serve transport exit $?"
grep -hE "^## c=1|^concurrency 1: [0-9]|^server, mean" "$R/run/serve.txt" | cut -c1-150 | tee -a "$R/log.txt" > /dev/null
timeout "$(lim 40)" "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx" > "$R/m2q-optimize.txt" 2>&1; t "optimize m2 int8 exit $?"
I8="BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
B="bench $WORK/m2q.onnx --engine cuda --precision fp16 -b 64,256 --duration 1s --warmup 0.5s --max-windows 3"
q m2q-graph-1 90 env $I8 "$CLI" $B --json "$R/m2q-graph-1.json"
q m2q-gemm-1 70 env $I8 BATCHWISE_INT8_POINTWISE=gemm BATCHWISE_INT8_TRACE=1 "$CLI" $B --json "$R/m2q-gemm-1.json"
q m2q-graph-2 40 env $I8 "$CLI" $B --json "$R/m2q-graph-2.json"
q m2q-gemm-2 40 env $I8 BATCHWISE_INT8_POINTWISE=gemm "$CLI" $B --json "$R/m2q-gemm-2.json"
q m2-fp16 40 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 64,256 --duration 1s --warmup 0.5s --max-windows 3
q m2q-gemm-compare 40 env $I8 BATCHWISE_INT8_POINTWISE=gemm "$CLI" compare "$WORK/m2q.onnx" --engines ort,cuda --precision fp16 -b 8
pack
