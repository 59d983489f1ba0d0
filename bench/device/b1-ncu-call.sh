#!/usr/bin/env bash
# Issue 16's ResNet-50 fp16 b=1 bar (4,000 img/s; 3,187 in session 40): where its ~314 µs go. Nsight Compute's duration,
# grid, block and registers of every kernel of one steady-state graph replay (clocks not locked), for the default plan
# with PDL on and for every convolution on the own split-K kernel with PDL and the projection shortcuts inside (session
# 33: 2,879 img/s against 3,162, so some own kernels are slower than cuDNN's or cuBLASLt's: which, by how much). A warm
# cache first, so the profiled processes time no tactics; then the two configurations alternating in bench for the rate.
# NCU_CACHE: none (default: a kernel reads what the one before it left in L2, as in the graph) or all (ncu's own default,
# which flushes the caches before every kernel: session 42's call 2 ran so, and its durations summed 379 µs against a
# 308 µs run). Summarise a CSV with bench/ncu-kernels.py CSV RUN_US.
source bench/device/call-lib.sh "${CALL_SECONDS:-400}"
unpack || { pack; exit 1; }
q warm 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 300ms --json "$R/warm.json"
EVERY="BATCHWISE_SPLITK_CONV=every BATCHWISE_SPLITK_PROJECTION=on"
q every-warm 40 env $EVERY "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 300ms --json "$R/every-warm.json"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /usr/local/cuda-*/bin/ncu 2>/dev/null | head -1)
t "ncu: ${NCU:-none}"
for cfg in default every; do
  [ -n "$NCU" ] || break
  envs="BATCHWISE_PDL=on"; [ $cfg = every ] && envs="$envs $EVERY"
  timeout "$(lim 130)" env $envs "$NCU" --clock-control none --cache-control "${NCU_CACHE:-none}" --graph-profiling node --launch-skip 200 --launch-count 300 \
    --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size,launch__registers_per_thread \
    --csv --page raw "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 0.05s --warmup 0.02s --max-windows 3 > "$R/ncu-$cfg.csv" 2> "$R/ncu-$cfg.log"
  t "ncu $cfg exit $? $(wc -l < "$R/ncu-$cfg.csv") lines"
done
for i in 1 2; do
  q default-$i 30 env BATCHWISE_PDL=on "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 1s --json "$R/default-$i.json"
  q every-$i 30 env BATCHWISE_PDL=on $EVERY "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 1s --json "$R/every-$i.json"
done
q every-prof 40 env BATCHWISE_PDL=on $EVERY "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 -b 1 --duration 300ms --profile --json "$R/every-prof.json"
pack
