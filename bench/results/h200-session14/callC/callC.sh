#!/usr/bin/env bash
# Session 14, call C (code of .device/rev): issue 12's served points and the transport ceiling, now also at c=256
# (bench/device/run.sh phases serve, transport). Reuses call B's extracted CLI when the machine is still the warm one.
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
left() { echo $(( 545 - ($(date +%s) - start) )); }
lim() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }
if [ ! -x "$WORK/cli/Batchwise.Cli" ] || ! cmp -s .device/rev "$WORK/rev"; then
  rm -rf "$WORK/cli" && tar -xJf .device/cli-full.tar.xz -C "$WORK" && cp .device/rev "$WORK/rev"; t "extracted the CLI"
fi
cp bench/device/run.sh .device/run.sh
CLI=$WORK/cli/Batchwise.Cli
export BATCHWISE_CACHE_DIR=$WORK/cache DOTNET_CLI_TELEMETRY_OPTOUT=1
t "git $(cat .device/rev); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
PHASES="serve transport" SERVE_MORE_INSTANCES="" TRANSPORT_LIMIT=110 OUT="$R/run" WORK="$WORK" CLI="$CLI" timeout "$(lim 520)" bash .device/run.sh > "$R/run.log" 2>&1
t "run.sh serve transport exit $?"
