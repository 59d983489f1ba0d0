#!/usr/bin/env bash
# Session 13, call 3: why main's b=1 is ~3% under phase 1's (ResNet-50 fp16): every kernel of a run, in order, with its
# own duration, from Nsight Compute on both builds.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
tar -xJf .device/tests.tar.xz -C "$WORK" && rm -rf "$WORK/cli" && cp -r "$WORK/tests" "$WORK/cli" && tar -xJf .device/cli-diff.tar.xz -C "$WORK/cli" && cp .device/rev "$WORK/rev"
rm -rf "$WORK/old" && cp -r "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"
CLI=$WORK/cli/Batchwise.Cli; OLD=$WORK/old/Batchwise.Cli
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev); ncu=${NCU:-none}"
q() { local tag=$1 lim=$2; shift 2; timeout "$lim" "$@" > "$R/$tag.txt" 2>&1; t "$tag exit $? $(grep -E '│ +(1|64|256) │' "$R/$tag.txt" | tr -s ' ' | cut -c1-50 | tr '\n' ';')"; }
# Warm each build's caches first, so the profiled process plans quickly.
q warm-new 30 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s
q warm-old 30 "$OLD" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.3s --warmup 0.1s
if [ -n "$NCU" ]; then
  for who in new old; do
    bin=$CLI; [ $who = old ] && bin=$OLD
    timeout 120 "$NCU" --clock-control none --graph-profiling node --metrics gpu__time_duration.sum --csv --launch-count 400 \
      "$bin" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.1s --warmup 0.05s --max-windows 1 > "$R/ncu-$who.csv" 2> "$R/ncu-$who.log"
    t "ncu $who exit $? $(wc -l < "$R/ncu-$who.csv") lines"
  done
fi
t "done"
