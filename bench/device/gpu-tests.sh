#!/usr/bin/env bash
# The CUDA engine's GPU tests one class at a time, each with its own time limit, so a slow class cannot hide the others'
# results (session 13's single run was cut at 240 s with no summary). A skip is a failure (BATCHWISE_REQUIRE_GPU=1).
#   TESTS=/path/Batchwise.Cuda.Tests OUT=dir [LIMIT=120] [LIMITS="Int8ModelGpuTests=240 ..."] [DEADLINE=480] \
#   [CLASSES="StagedGpuTests ..."] [FIRST="..."] [LAST="..."] [SKIP="..."] [PROBES=1] \
#   [BATCHWISE_ONNX_NODE_TESTS=dir] bash bench/device/gpu-tests.sh
# CLASSES defaults to every class of the Gpu folder and every *Gpu*Tests class the test binary lists (-list classes), less the three measurement probes
# that time every candidate of a library and judge nothing (PROBES=1 keeps them) and NodeGpuTests when no node data is
# given. Stops starting classes after DEADLINE seconds. One line per class in OUT/summary.txt; each class's log beside.
# ONNX's node data: carry Debian's (tar -cJf .device/node.tar.xz -C /usr/share/libonnx-testdata/data node, 1.2 MB) and
# extract it on the machine; the onnx wheel there has none and could not generate it (session 13).
set -uo pipefail
TESTS=${TESTS:?the published Batchwise.Cuda.Tests}
OUT=${OUT:-$PWD/gpu-tests}
LIMIT=${LIMIT:-120}
DEADLINE=${DEADLINE:-480}
mkdir -p "$OUT"
export BATCHWISE_REQUIRE_GPU=1
probes=" ConvFusionProbeGpuTests Int8ProbeGpuTests Int8GraphEnginesGpuTests "
classes=${CLASSES:-$("$TESTS" -list classes 2>/dev/null | grep -E '\.Gpu\.|Gpu[A-Za-z0-9_]*Tests$' | sed 's/.*\.//' | sort -u)}
# FIRST and LAST put those classes at the ends of the order; SKIP leaves classes out (those a call before passed).
if [[ -n ${FIRST:-}${LAST:-}${SKIP:-} ]]; then
  middle=$(tr ' ' '\n' <<< "$classes" | grep -vxF -f <(tr ' ' '\n' <<< "${FIRST:-} ${LAST:-} ${SKIP:-}" | grep .) | tr '\n' ' ')
  classes="${FIRST:-} $middle ${LAST:-}"
fi
start=$SECONDS
: > "$OUT/summary.txt"
for c in $classes; do
  if [[ "$probes" == *" $c "* && "${PROBES:-0}" != 1 ]]; then echo "$c: not run (a measurement probe; PROBES=1 runs it)" >> "$OUT/summary.txt"; continue; fi
  if [[ $c == NodeGpuTests && -z "${BATCHWISE_ONNX_NODE_TESTS:-}" ]]; then echo "$c: not run (no BATCHWISE_ONNX_NODE_TESTS)" >> "$OUT/summary.txt"; continue; fi
  left=$(( DEADLINE - (SECONDS - start) ))
  if (( left < 20 )); then echo "$c: not run (the ${DEADLINE} s are spent)" >> "$OUT/summary.txt"; continue; fi
  limit=$LIMIT
  for pair in ${LIMITS:-}; do [[ $pair == "$c="* ]] && limit=${pair#*=}; done
  timeout $(( left < limit ? left : limit )) "$TESTS" -parallelMode none -class "*.$c" -noColor > "$OUT/$c.log" 2>&1
  code=$?
  line=$(grep -E 'Total:' "$OUT/$c.log" | tail -1 | sed 's/^ *//')
  echo "$c: exit $code${line:+; $line}$([ $code = 124 ] && echo "; cut at its time limit")" >> "$OUT/summary.txt"
done
cat "$OUT/summary.txt"
