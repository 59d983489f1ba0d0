#!/usr/bin/env bash
# Serve benchmark: zoo:resnet18 on ONNX Runtime CPU, everything on 127.0.0.1. Each round measures, back to back,
# the offline reference (IEngineSession.Prepare loop at batch 1, 8, 16) and the server over gRPC at
# concurrency 32 with dynamic batching (1 instance; 2 instances x 1 thread), without it, and at concurrency 1.
# Rounds repeat so the spread from a shared machine shows.
# Usage: bench/serve/run.sh OUTDIR [ROUNDS] [SECONDS]   (build first: dotnet build src/Batchwise.Cli -c Release)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/serve-bench}; rounds=${2:-2}; secs=${3:-15}; mkdir -p "$out"
bw=src/Batchwise.Cli/bin/Release/net10.0/Batchwise.Cli
model=zoo:resnet18

serve() { # name, extra serve args...
  local name=$1; shift
  $bw serve $model --http-port 18100 --grpc-port 18101 --metrics-port 18102 "$@" > "$out/serve-$name.log" 2>&1 &
  spid=$!
  for _ in $(seq 1 600); do curl -sf -o /dev/null 127.0.0.1:18100/v2/health/ready && return 0; sleep 0.5; done
  echo "server did not start"; kill -TERM $spid; exit 1
}
stop() { kill -TERM $spid; wait $spid; }
load() { # file, concurrency
  $bw load 127.0.0.1:18101 -m resnet18 --protocol grpc -c "$2" --json - --warmup 3 --duration "$secs" > "$out/$1.json"
  curl -s 127.0.0.1:18102/metrics | grep -E '^batchwise_inference_batch_size_(sum|count)' > "$out/$1.metrics" || true
}

for r in $(seq 1 "$rounds"); do
  echo "round $r: $(uptime)" | tee -a "$out/uptime.txt"
  dotnet run bench/serve/offline.cs -- $model 1,8,16 "$((secs * 2 / 3))" | tee "$out/r$r-offline.txt"
  serve batching-i1 --max-batch-size 16 --max-queue-delay-us 2000
  load "r$r-c32-batching-i1" 32
  load "r$r-c1-batching-i1" 1
  stop
  serve batching-i2 --max-batch-size 16 --max-queue-delay-us 2000 --instances 2 --threads 1
  load "r$r-c32-batching-i2" 32
  stop
  serve nobatching --no-dynamic-batching
  load "r$r-c32-nobatching" 32
  stop
done
echo "end: $(uptime)" | tee -a "$out/uptime.txt"
