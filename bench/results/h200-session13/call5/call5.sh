#!/usr/bin/env bash
# Session 13, call 5 (final commit): issue 12's served points and the transport (bench/device/run.sh phases serve,
# transport; the --instances 3 server left out).
set -uo pipefail
R=$OUT/r; WORK=/tmp/bw; mkdir -p "$WORK" "$R"
start=$(date +%s); t() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$R/log.txt"; }
cp bench/device/run.sh .device/run.sh
t "git $(cat .device/rev)"
PHASES="serve transport" SERVE_MORE_INSTANCES="" TRANSPORT_LIMIT=130 OUT="$R/run" WORK="$WORK" timeout 480 bash .device/run.sh > "$R/run.log" 2>&1
t "run.sh serve transport exit $?"
