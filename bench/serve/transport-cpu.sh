#!/usr/bin/env bash
# Transport benchmark (issue 12) on a CPU host: `serve zoo:transport` (one ReduceMean, ONNX Runtime, 2 instances) loaded
# by `batchwise load` on the same host with batch-1 float32 [1,3,224,224] requests (602,112 bytes), HTTP binary data and
# gRPC raw_input_contents, at concurrency 1, 4 and 16. Two builds (before / after) are measured in alternation, round
# after round, so a shared machine's load hits both alike; compare them as ratios within a round.
# Per point it records the load report (with the load generator's own CPU per request) and, from the server side,
# its CPU time per request (/proc/PID/stat over the whole `load` call, divided by the requests its metrics counted).
# Usage: bench/serve/transport-cpu.sh OUTDIR BEFORE_CLI AFTER_CLI [ROUNDS] [SECONDS]
#   (each CLI: a built src/Batchwise.Cli/bin/Release/net10.0/Batchwise.Cli)
# Environment (defaults: the first measurements'): SERVE_ARGS (extra `serve` options, default --instances 2),
# POINTS (protocol:concurrency[:shm] list, shm = system for inputs in system shared memory), LOAD_ARGS (extra `load` options),
# MODEL (what `serve` serves, default zoo:transport) and NAME (its model name, default transport).
# Besides the CPU, each point's server line has the mean time per request inside the server, in microseconds, from the
# metrics batchwise_inference_{queue,request,compute}_seconds (sum / count over the `load` call): at c=1 with no queue
# delay, end-to-end p50 minus request_us is what the transport (both sides' HTTP/gRPC stacks) costs.
set -euo pipefail
out=$1; before=$2; after=$3; rounds=${4:-2}; secs=${5:-3}; mkdir -p "$out"
tick=$(getconf CLK_TCK)
serve_args=${SERVE_ARGS:---instances 2}
points=${POINTS:-http:1 http:4 http:16 grpc:1 grpc:4 grpc:16}
load_args=${LOAD_ARGS:-}
model=${MODEL:-zoo:transport}
name=${NAME:-transport}
spid=
cleanup() { if [ -n "$spid" ]; then kill -TERM "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true; fi; }
trap cleanup EXIT

serve() { # cli, name
  "$1" serve $model --http-port 18200 --grpc-port 18201 --metrics-port 18202 $serve_args > "$out/serve-$2.log" 2>&1 &
  spid=$!
  for _ in $(seq 1 240); do curl -sf -o /dev/null 127.0.0.1:18200/v2/health/ready && return 0; sleep 0.5; done
  echo "server did not start (see $out/serve-$2.log)"; exit 1
}
stop() { kill -TERM "$spid"; timeout 60 tail --pid="$spid" -f /dev/null || kill -KILL "$spid"; wait "$spid" 2>/dev/null || true; spid=; }
cpu() { awk -v t="$tick" '{ print ($14 + $15) / t }' "/proc/$spid/stat"; }
# CPU seconds of the native worker threads (ONNX Runtime's pools): threads that kept the process's own name, bar the
# main thread (.NET names its own threads ".NET ..." and Kestrel's); what they spend spinning shows here, not as work.
native_cpu() {
  local name s=0 t; name=$(cat "/proc/$spid/comm")
  for t in /proc/"$spid"/task/*; do
    [ "${t##*/}" = "$spid" ] && continue
    [ "$(cat "$t/comm" 2>/dev/null)" = "$name" ] || continue
    s=$(awk -v s="$s" -v k="$tick" '{ sub(/^.*\) /, ""); print s + ($12 + $13) / k }' "$t/stat" 2>/dev/null || echo "$s")
  done
  echo "$s"
}
metric() { curl -s 127.0.0.1:18202/metrics | awk -v m="$1" 'index($0, m) == 1 { s += $NF } END { print s + 0 }'; }
# The server's mean queue, request and compute microseconds per request since the last call (sum and count deltas).
server_times() {
  local m out="" s c
  for m in queue request compute; do
    s=$(metric "batchwise_inference_${m}_seconds_sum"); c=$(metric "batchwise_inference_${m}_seconds_count")
    out="$out $s $c"
  done
  echo "$out"
}
load() { # cli, file, protocol, concurrency, shared memory (none|system)
  local port=18200; [ "$3" = grpc ] && port=18201
  local c0 r0 t0 t1
  local n0 n1
  c0=$(cpu); n0=$(native_cpu); r0=$(metric 'batchwise_inference_requests_total'); t0=$(server_times)
  timeout 120 "$1" load "127.0.0.1:$port" -m "$name" --protocol "$3" -c "$4" --shared-memory "${5:-none}" $load_args --warmup 1 --duration "$secs" --json "$out/$2.json" 2> "$out/$2.log" > /dev/null
  local c1 r1
  c1=$(cpu); n1=$(native_cpu); r1=$(metric 'batchwise_inference_requests_total'); t1=$(server_times)
  local per='BEGIN { if (y > x) printf "%.3f", (b - a) * 1000 / (y - x); else printf "nan" }'
  echo "$2 server_cpu_ms_per_request $(awk -v a="$c0" -v b="$c1" -v x="$r0" -v y="$r1" "$per") requests $((${r1%.*} - ${r0%.*})) native_threads_cpu_ms_per_request $(awk -v a="$n0" -v b="$n1" -v x="$r0" -v y="$r1" "$per") $(echo $t0 $t1 | awk '{ for (i = 0; i < 3; i++) { n = $(i * 2 + 8) - $(i * 2 + 2); printf "%s_us %s ", (i == 0 ? "queue" : i == 1 ? "request" : "compute"), (n > 0 ? sprintf("%.1f", ($(i * 2 + 7) - $(i * 2 + 1)) * 1e6 / n) : "nan") } }')" | tee -a "$out/server.txt"
}

for r in $(seq 1 "$rounds"); do
  for build in before after; do
    cli=$before; [ $build = after ] && cli=$after
    echo "round $r $build: $(uptime)" | tee -a "$out/uptime.txt"
    serve "$cli" "r$r-$build"
    for point in $points; do
      IFS=: read -r p c shm <<< "$point"
      load "$cli" "r$r-$build-$p-c$c${shm:+-$shm}" "$p" "$c" "${shm:-none}"
    done
    stop
  done
done
echo "end: $(uptime)" | tee -a "$out/uptime.txt"
