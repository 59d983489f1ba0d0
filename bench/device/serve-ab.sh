#!/usr/bin/env bash
# Issue 12's shared-memory points, A/B in one run: for each variant in VARIANTS (serve options separated by '|'; an
# empty variant is the defaults), serve ResNet-50 fp16 (max batch 64, the default batch profiles, 2 instances, 200 us
# queue delay), load it over gRPC with CUDA shared memory at c=256,512 and with system shared memory at c=512, and read
# the plan-build counter; then, once, the offline references in the same run (compute only and --transfers, b=64,
# c=1,2). Everything in $OUT/serve-ab.txt.
#   CLI=/path/Batchwise.Cli OUT=dir VARIANTS="|--pipeline-depth 2" bash bench/device/serve-ab.sh
# A variant's NAME=value words set the server's environment (VARIANTS="|BATCHWISE_HOST_ROW_BYTES=0").
# CUDA_C and SYSTEM_C set the concurrency lists (default 256,512 and 512; empty skips that kind); ROUNDS=2 runs every
# variant twice, alternating, so a difference can be read against the spread between rounds.
set -uo pipefail
CLI=${CLI:?the published Batchwise.Cli}
OUT=${OUT:-$PWD/serve-ab}
mkdir -p "$OUT"
IFS='|' read -r -a variants <<< "${VARIANTS:-}"
[ ${#variants[@]} -eq 0 ] && variants=("")
ready() {
  for _ in $(seq 1 120); do
    python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:18000/v2/health/ready', timeout=2).status == 200 else 1)" 2>/dev/null && return 0
    sleep 1
  done
  return 1
}
builds() { python3 -c "
import urllib.request
t = urllib.request.urlopen('http://127.0.0.1:18002/metrics', timeout=10).read().decode()
print(' '.join(l for l in t.splitlines() if l.startswith('batchwise_plan_builds_total')) or 'batchwise_plan_builds_total (absent)')"; }
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
  for round in $(seq 1 "${ROUNDS:-1}"); do
  for v in "${variants[@]}"; do
    # A variant that names --instances replaces the base's 2.
    base="--instances 2"; [[ "$v" == *--instances* ]] && base=""
    echo "## round $round: serve zoo:resnet50 --engine cuda --precision fp16 --max-batch-size 64 $base --max-queue-delay-us 200 ${v:-(defaults)}"
    # Words of the form NAME=value (BATCHWISE_HOST_ROW_BYTES=0) set the server's environment; the rest are serve options.
    envs=(); opts=()
    for word in $v; do if [[ $word =~ ^[A-Z_]+= ]]; then envs+=("$word"); else opts+=("$word"); fi; done
    # shellcheck disable=SC2086
    env "${envs[@]}" "$CLI" serve zoo:resnet50 --engine cuda --precision fp16 --max-batch-size 64 $base --max-queue-delay-us 200 \
      --http-port 18000 --grpc-port 18001 --metrics-port 18002 "${opts[@]}" > "$OUT/serve-$round-${#v}.log" 2>&1 &
    server=$!
    if ready; then
      echo "plan builds at ready: $(builds)"
      # A server's first load after ready runs 6-7% below the later ones (session 19, call 6): one load, not counted, first.
      timeout 30 "$CLI" load 127.0.0.1:18001 --protocol grpc -m resnet50 -c 512 --shared-memory cuda --duration 3 --warmup 1 > /dev/null 2>&1
      for sm in cuda system; do
        c=${CUDA_C-256,512}; [ $sm = system ] && c=${SYSTEM_C-512}
        [ -z "$c" ] && continue
        echo "### load --protocol grpc --shared-memory $sm -c $c"
        timeout 60 "$CLI" load 127.0.0.1:18001 --protocol grpc -m resnet50 -c $c --shared-memory $sm --duration 4 --warmup 1 2>&1 | grep -E "│ *[0-9]+ |Error|error" | head -4
      done
      echo "plan builds after the loads: $(builds)"
    else
      echo "server did not become ready:"; tail -5 "$OUT/serve-${#v}.log"
    fi
    kill -TERM $server; wait $server; echo "server exit $?"
  done
  done
  echo "## offline compute only, b=64 c=1,2"
  timeout 60 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 64 -c 1,2 --duration 1s --warmup 0.5s 2>&1 | grep -E "│ *64"
  echo "## offline --transfers, b=64 c=1,2"
  timeout 60 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 --transfers -b 64 -c 1,2 --duration 1s --warmup 0.5s 2>&1 | grep -E "│ *64"
} > "$OUT/serve-ab.txt" 2>&1
cat "$OUT/serve-ab.txt"
