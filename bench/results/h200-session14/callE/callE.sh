#!/usr/bin/env bash
# Session 14, call E (final code, .device/rev): NVIDIA's tritonclient over CUDA shared memory against `batchwise serve`
# on gRPC (the machine's python3 has no geventhttpclient for tritonclient.http and no rapidjson: bench/device/pyshim
# stands in for the latter), then Nsight Compute on both builds' b=1 graphs without cache flushes (issue 11).
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 125 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
rm -rf "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && tar -xzf .device/tritonclient.tgz -C "$WORK"
CLI=$WORK/cli/Batchwise.Cli
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "extracted; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader); git $(cat .device/rev)"
PYTHONPATH=$PWD/bench/device/pyshim BATCHWISE_TRITONCLIENT_PROTOCOLS=grpc BATCHWISE_CLI=$CLI TRITONCLIENT_PATH=$WORK/tritonclient BATCHWISE_TEST_LIMIT_SECONDS=60 \
  timeout "$(lim 70)" python3 -m pytest -v -rs tests/tritonclient/test_cuda_shared_memory.py > "$R/tritonclient-cuda-shm.txt" 2>&1
t "tritonclient cuda shm (grpc) exit $? $(tail -1 "$R/tritonclient-cuda-shm.txt")"
cp -r "$WORK/cli" "$WORK/old" && tar -xJf .device/cli-old2.tar.xz -C "$WORK/old"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
for who in new old; do
  bin=$CLI; [ $who = old ] && bin=$WORK/old/Batchwise.Cli
  timeout "$(lim 25)" "$NCU" --clock-control none --cache-control none --graph-profiling node --metrics gpu__time_duration.sum --csv --launch-count 300 \
    "$bin" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.1s --warmup 0.05s --max-windows 3 > "$R/ncu-nocache-$who.csv" 2> "$R/ncu-nocache-$who.log"
  t "ncu no-flush $who exit $? $(wc -l < "$R/ncu-nocache-$who.csv") lines"
done
t "done"
