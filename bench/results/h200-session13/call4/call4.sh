#!/usr/bin/env bash
# Session 13, call 4 (final commit): every GPU test and ONNX's node tests (bench/device/run.sh phases tests, nodes);
# ResNet-50 fp16 at the fixed shapes against phase 1 (b8b556f) in one run, alternating; the int8 route (issue 19).
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
cp bench/device/run.sh .device/run.sh
PHASES="tests nodes" TESTS_LIMIT=230 NODES_LIMIT=60 OUT="$R/run" WORK="$WORK" timeout 330 bash .device/run.sh > "$R/run.log" 2>&1
t "run.sh tests nodes exit $?; $(grep -hE 'Total:|tests exit' "$R/run/gpu-tests.log" | tr '\n' ' ')"
rm -rf "$WORK/old" && cp -r "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "git $(cat .device/rev)"
q() { local tag=$1 lim=$2; shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|8|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-40 | tr '\n' ';')"; }
for i in 1 2; do
  for who in new old; do
    bin=$CLI; [ $who = old ] && bin=$OLD
    q fixed-$who-$i 45 "$bin" bench zoo:resnet50 --engine cuda --precision fp16 -b 1,8,64,256 --json "$R/fixed-$who-$i.json"
  done
done
timeout 60 "$CLI" optimize zoo:resnet50 --int8 --calibration random:2 -o "$WORK/r50q.onnx" > "$R/r50q-optimize.txt" 2>&1
t "optimize int8 exit $?"
export BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused
q r50q-256 110 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 256 --profile --json "$R/r50q-256.json"
q r50q-1-64 40 "$CLI" bench "$WORK/r50q.onnx" --engine cuda --precision fp16 -b 1,64 --json "$R/r50q-1-64.json"
q r50q-compare 60 "$CLI" compare "$WORK/r50q.onnx" --engines ort,cuda --precision fp16 -b 8
t "done"
