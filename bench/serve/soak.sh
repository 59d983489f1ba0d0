#!/usr/bin/env bash
# Soak: `batchwise serve` under steady load for a long time, its resident memory sampled throughout.
# zoo:mlp on ONNX Runtime CPU with dynamic batching; `batchwise load` runs back to back (HTTP binary and gRPC raw,
# 8 clients each, batch 4) while a third client sends the hostile 87-byte request of issue 14 (D1: claims a 2 GB tensor)
# and a malformed one every 0.2 s, which must all be answered 400. The server's RSS is read from /proc every 5 s.
# Pass: RSS growth after warm-up < 5% (mean of the last minute against the mean of the minute after warm-up),
# zero failed valid requests (load errors and the server's failure counters; "cancelled" is counted apart: `load`
# cancels the requests still in flight when each of its runs ends), every hostile request answered 400.
# Usage: bench/serve/soak.sh OUTDIR [SECONDS] [WARMUP_SECONDS]   (build first: dotnet build src/Batchwise.Cli -c Release)
#        SUMMARY_ONLY=1 bench/serve/soak.sh OUTDIR [SECONDS] [WARMUP_SECONDS]   (recompute summary.json from OUTDIR)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/serve-soak}; total=${2:-600}; warm=${3:-60}; mkdir -p "$out"
bw=src/Batchwise.Cli/bin/Release/net10.0/Batchwise.Cli
http=18300; grpc=18301

if [ -z "${SUMMARY_ONLY:-}" ]; then
$bw serve zoo:mlp --http-port $http --grpc-port $grpc --max-batch-size 16 --max-queue-delay-us 500 > "$out/serve.log" 2>&1 &
spid=$!
cleanup() { kill -TERM $spid 2>/dev/null || true; kill "${bg[@]}" 2>/dev/null || true; }
bg=()
trap cleanup EXIT
for _ in $(seq 1 600); do curl -sf -o /dev/null 127.0.0.1:$http/v2/health/ready && break; sleep 0.5; done
curl -sf -o /dev/null 127.0.0.1:$http/v2/health/ready || { echo "server did not start"; exit 1; }

start=$(date +%s)
echo "t_seconds,rss_kb" > "$out/rss.csv"
( while kill -0 $spid 2>/dev/null; do
    echo "$(( $(date +%s) - start )),$(awk '/^VmRSS/ {print $2}' /proc/$spid/status)" >> "$out/rss.csv"; sleep 5
  done ) & bg+=($!)

hostile() { # sends the D1 request and a malformed one until the soak ends; counts answers by status
  local d1='{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 500000000], "data": [1.0]}]}'
  local bad='{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4611686018427387904],"parameters":{"binary_data_size":0}}]}'
  while [ $(( $(date +%s) - start )) -lt "$total" ]; do
    for body in "$d1" "$bad"; do
      curl -s -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/json' --data "$body" 127.0.0.1:$http/v2/models/mlp/infer >> "$out/hostile-status.txt"
    done
    sleep 0.2
  done
}
: > "$out/hostile-status.txt"
hostile & bg+=($!)

n=0
while [ $(( $(date +%s) - start )) -lt "$total" ]; do
  n=$((n + 1))
  $bw load 127.0.0.1:$http -m mlp --protocol http -b 4 -c 8 --warmup 0 --duration 15 --json > "$out/load-$n-http.json" &
  lh=$!
  $bw load 127.0.0.1:$grpc -m mlp --protocol grpc -b 4 -c 8 --warmup 0 --duration 15 --json > "$out/load-$n-grpc.json"
  wait $lh
done
wait "${bg[@]:1}" 2>/dev/null || true
curl -s 127.0.0.1:$http/metrics | grep -E '^batchwise_inference_(requests|failures)_total' > "$out/metrics.txt" || true
kill -TERM $spid; wait $spid || true
sleep 6; kill "${bg[0]}" 2>/dev/null || true
trap - EXIT
fi

python3 - "$out" "$warm" <<'EOF'
import csv, glob, json, sys, collections
out, warm = sys.argv[1], int(sys.argv[2])
rows = [(int(r["t_seconds"]), int(r["rss_kb"])) for r in csv.DictReader(open(f"{out}/rss.csv")) if r["rss_kb"]]
after = [r for r in rows if r[0] >= warm]
first = [kb for t, kb in after if t < warm + 60]
last = [kb for t, kb in after if t >= after[-1][0] - 60]
growth = (sum(last) / len(last)) / (sum(first) / len(first)) - 1
requests = errors = 0
kinds = collections.Counter()
for f in glob.glob(f"{out}/load-*.json"):
    for p in json.load(open(f))["points"]:
        requests += p["requests"]; errors += p["errors"]; kinds.update(p["error_kinds"])
hostile = collections.Counter(l.strip() for l in open(f"{out}/hostile-status.txt") if l.strip())
failures = collections.Counter()
for l in open(f"{out}/metrics.txt"):
    if l.startswith("batchwise_inference_failures_total"):
        failures[l.split('reason="')[1].split('"')[0]] += float(l.split()[-1])
server_requests = sum(float(l.split()[-1]) for l in open(f"{out}/metrics.txt") if l.startswith("batchwise_inference_requests_total"))
summary = {
    "seconds": rows[-1][0], "warmup_seconds": warm, "rss_mb_at_start": rows[0][1] / 1024,
    "rss_mb_first_minute_after_warmup": sum(first) / len(first) / 1024, "rss_mb_last_minute": sum(last) / len(last) / 1024,
    "rss_mb_max_after_warmup": max(kb for _, kb in after) / 1024, "rss_growth_percent": growth * 100,
    "valid_requests_answered": requests, "valid_request_errors": errors, "error_kinds": dict(kinds),
    "server_requests": server_requests, "server_failures_by_reason": dict(failures),
    "hostile_requests_by_status": dict(hostile),
}
server_errors = sum(n for reason, n in failures.items() if reason != "cancelled")
summary["pass"] = growth < 0.05 and errors == 0 and server_errors == 0 and set(hostile) == {"400"}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
EOF
