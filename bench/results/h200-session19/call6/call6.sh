#!/usr/bin/env bash
# Session 19, call 6: does the load generator's inline socket completions move issue 12's CUDA shared-memory point?
# One server (defaults), load with CUDA shared memory at c=512, the variable unset (inline, load's default) and at 0
# (the thread-pool hop), alternating twice; the compute-only reference after.
source bench/device/call-lib.sh 120
unpack || exit 1
"$CLI" serve zoo:resnet50 --engine cuda --precision fp16 --max-batch-size 64 --instances 2 --max-queue-delay-us 200 \
  --http-port 18000 --grpc-port 18001 --metrics-port 18002 > "$R/serve.log" 2>&1 &
S=$!
for i in $(seq 1 90); do curl -sf -o /dev/null 127.0.0.1:18000/v2/health/ready && break; sleep 1; done
t "ready"
for r in 1 2; do
  for v in inline pool; do
    e=""; [ $v = pool ] && e="DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0"
    env $e timeout 20 "$CLI" load 127.0.0.1:18001 --protocol grpc -m resnet50 -c 512 --shared-memory cuda --duration 3 --warmup 1 > "$R/load-$v-$r.txt" 2>&1
    t "$v $r: $(grep -E '^concurrency 512: [0-9]' "$R/load-$v-$r.txt" | cut -c1-110)"
  done
done
kill -TERM $S; wait $S
q compute 30 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 64 -c 2 --duration 1s --warmup 0.5s
pack
