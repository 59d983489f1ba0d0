#!/usr/bin/env bash
# Session 17, call 4 (code of .device/rev): the depthwise kernel's QDQ output chain through a 256-entry table (114d158)
# against the row kernel before it (6ab0aea's Batchwise.Cuda.dll over the same CLI with BATCHWISE_DEPTHWISE=rows: the
# same kernel without the table) on MobileNetV2 int8, alternating; GPU tests of the int8 model against ORT and the
# kernel cases; MobileNetV2 fp16 in the same call for the int8/fp16 ratio (issue 19).
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 370 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
rm -rf "$WORK/cli" "$WORK/tests" "$WORK/base" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && cp -r "$WORK/cli" "$WORK/tests" && cp -r "$WORK/cli" "$WORK/base"
tar -xJf .device/testdiff.tar.xz -C "$WORK/tests" && tar -xJf .device/cli-base.tar.xz -C "$WORK/base"
CLI=$WORK/cli/Batchwise.Cli; BASE=$WORK/base/Batchwise.Cli; TESTS=$WORK/tests/Batchwise.Cuda.Tests
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev)"
q() { local tag=$1 lim; lim=$(lim "$2"); shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|8|32|64|256)( knee)? +│' "$R/$tag.txt" | tr -s ' ' | cut -c1-60 | tr '\n' ';')"; }
timeout "$(lim 40)" "$CLI" optimize zoo:mobilenetv2 --int8 --calibration random:2 -o "$WORK/m2q.onnx" > "$R/m2q-optimize.txt" 2>&1; t "optimize mobilenetv2 int8 exit $?"
I8="BATCHWISE_INT8=on BATCHWISE_INT8_GRAPH=on BATCHWISE_INT8_RESIDUAL=fused"
for i in 1 2; do
  q m2q-table-$i 45 env $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --json "$R/m2q-table-$i.json"
  q m2q-base-$i 45 env $I8 BATCHWISE_DEPTHWISE=rows "$BASE" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64,256 --json "$R/m2q-base-$i.json"
done
q m2-fp16 25 "$CLI" bench zoo:mobilenetv2 --engine cuda --precision fp16 -b 64,256 --json "$R/m2-fp16.json"
timeout "$(lim 30)" "$CLI" compare "$WORK/m2q.onnx" --engines ort,cuda > "$R/m2q-compare.txt" 2>&1; t "m2q compare exit $? $(grep -E 'PASS|FAIL' "$R/m2q-compare.txt" | head -2 | tr '\n' ';')"
CLASSES="QuantizedModelGpuTests KernelCaseGpuTests" TESTS=$TESTS OUT=$R/gpu LIMIT=110 DEADLINE=$(( $(left) - 40 )) bash bench/device/gpu-tests.sh > "$R/gpu-tests.txt" 2>&1
cat "$R/gpu/summary.txt" >> "$R/log.txt"
q m2q-profile 35 env $I8 "$CLI" bench "$WORK/m2q.onnx" --engine cuda --precision fp16 -b 64 --profile --json "$R/m2q-profile.json"
find "$R" -name '*.json' -size +200k -exec xz -9 {} \;
t "done"
cd "$OUT" && tar -cJf r.tar.xz r && cp r/log.txt log.txt && rm -rf r
