#!/usr/bin/env bash
# Session 13, call 5 (final code, 9e80de2; right after call 4 on the same warm machine, whose /tmp/bw/tests it reuses):
# ResNet-50 fp16 at the fixed shapes against phase 1 (b8b556f) in one run; the int8 route (issue 19); issue 12's served
# points and the transport (bench/device/run.sh phases serve, transport; the --instances 3 server left out).
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 540 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
cp bench/device/run.sh .device/run.sh
[ -x "$WORK/tests/Batchwise.Cuda.Tests" ] || { t "no $WORK/tests: the machine was not the warm one of call 4"; exit 3; }
rm -rf "$WORK/cli" && cp -r "$WORK/tests" "$WORK/cli" && tar -xJf .device/cli-diff.tar.xz -C "$WORK/cli"
rm -rf "$WORK/old" && cp -r "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"
t "git $(cat .device/rev); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
q() { local tag=$1 lim; lim=$(lim "$2"); shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|8|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-40 | tr '\n' ';')"; }
for i in 1; do
  for who in new old; do
    bin=$CLI; [ $who = old ] && bin=$OLD
    q fixed-$who-$i 45 "$bin" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/fixed-$who-$i.json"
  done
done
timeout "$(lim 60)" "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx" > "$R/r50q-optimize.txt" 2>&1
t "optimize int8 exit $?"
export BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused
q r50q-256 110 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --json "$R/r50q-256.json"
q r50q-1-64 40 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,64 --json "$R/r50q-1-64.json"
q r50q-compare 60 "$CLI" compare "$WORK/r50q.onnx" --engines ort,cuda --precision fp16 -b 8
unset BATCHWISE_INT8 BATCHWISE_INT8_GRAPH BATCHWISE_INT8_RESIDUAL
PHASES="serve transport" SERVE_MORE_INSTANCES="" TRANSPORT_LIMIT=100 OUT="$R/run" WORK="$WORK" timeout "$(lim 330)" bash .device/run.sh > "$R/run.log" 2>&1
t "run.sh serve transport exit $?"
