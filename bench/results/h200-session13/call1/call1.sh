#!/usr/bin/env bash
# Session 13, call 1: the int8 route's unmeasured work (residual fusion, 16-byte pad, choice reuse) and b=1 vs phase 1.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( ${DEADLINE:-520} - ($(date +%s) - start) )); }
tar -xJf .device/tests.tar.xz -C "$WORK" && rm -rf "$WORK/cli" && cp -r "$WORK/tests" "$WORK/cli" && tar -xJf .device/cli-diff.tar.xz -C "$WORK/cli"
rm -rf "$WORK/old" && cp -r "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli; TESTS=$WORK/tests/Batchwise.Cuda.Tests
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev 2>/dev/null)"
q() { local tag=$1 lim=$2; shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|64|256) │' "$R/$tag.txt" | tr -s ' ' | cut -c1-50 | tr '\n' ';')"; }
# b=1 alone without --profile, alternating phase 1 (b8b556f), main, and main with cuDNN for the pointwise convs / stem
for i in 1 2; do
  for who in old new pw-cudnn stem-cudnn both-cudnn; do
    [ "$(left)" -lt 15 ] && break 2
    bin=$CLI; [ $who = old ] && bin=$OLD
    env=(); case $who in pw-cudnn) env=(BATCHWISE_POINTWISE_CONV=cudnn);; stem-cudnn) env=(BATCHWISE_STEM_CONV=cudnn);; both-cudnn) env=(BATCHWISE_POINTWISE_CONV=cudnn BATCHWISE_STEM_CONV=cudnn);; esac
    q b1-$who-$i 25 env "${env[@]}" "$bin" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 2s --warmup 0.5s --json "$R/b1-$who-$i.json"
  done
done
timeout 60 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx" > "$R/r50q-optimize.txt" 2>&1
t "optimize int8 exit $?"
export BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_TRACE=1
BATCHWISE_INT8_RESIDUAL=fused q r50q-fused-256 110 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --verbose --profile --json "$R/r50q-fused-256.json"
q r50q-plain-256 100 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --verbose --profile --json "$R/r50q-plain-256.json"
BATCHWISE_INT8_RESIDUAL=fused q r50q-fused-multi 90 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,64,256 --verbose --json "$R/r50q-fused-multi.json"
BATCHWISE_INT8_RESIDUAL=fused q r50q-fused-compare 60 "$CLI" compare "$WORK/r50q.onnx" --engines ort,cuda --precision fp16 -b 8
unset BATCHWISE_INT8_TRACE
q fp16-ref 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,64,256 --json "$R/fp16-ref.json"
unset BATCHWISE_INT8 BATCHWISE_INT8_GRAPH
[ "$(left)" -gt 100 ] && { timeout $(( $(left) - 10 )) "$TESTS" -parallelMode none -class '*Int8ResidualFusionGpuTests' -noColor > "$R/int8-tests.log" 2>&1; t "int8 residual gpu tests exit $? $(grep -E 'Total:' "$R/int8-tests.log")"; }
t "done"
