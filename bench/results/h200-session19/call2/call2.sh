#!/usr/bin/env bash
# Session 19, call 2: issue 12's shared-memory points at c=512,1024 for the defaults, --inline-io and --instances 3,
# two rounds alternating, offline references after (bench/device/serve-ab.sh); then the c=1 servers (defaults,
# --inline-io) with the offline b=1 --transfers reference before and after.
source bench/device/call-lib.sh 555
unpack || exit 1
CLI="$CLI" OUT="$R/ab" VARIANTS="|--inline-io|--instances 3" CUDA_C=512,1024 SYSTEM_C=512,1024 ROUNDS=2 timeout "$(lim 330)" bash bench/device/serve-ab.sh > "$R/ab.log" 2>&1
t "serve-ab exit $?"
grep -hE "^##|^concurrency [0-9]+: [0-9]|│ *(64|512|1024) " "$R/ab/serve-ab.txt" | cut -c1-160 >> "$R/log.txt"
q b1-before 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 --transfers -b 1 --duration 1s --warmup 0.5s --csv "$R/b1-before.csv"
cp bench/device/run.sh .device/run.sh
PHASES="serve" SERVE_MAIN=0 C1_VARIANTS="|--inline-io" OUT="$R/c1" WORK="$WORK" CLI="$CLI" timeout "$(lim 150)" bash .device/run.sh > "$R/c1.log" 2>&1
t "c1 exit $?"
grep -hE "^## c=1|^concurrency 1: [0-9]|^server, mean" "$R/c1/serve.txt" | cut -c1-150 >> "$R/log.txt"
q b1-after 40 "$CLI" bench zoo:resnet50 --engine cuda --precision fp16 --transfers -b 1 --duration 1s --warmup 0.5s --csv "$R/b1-after.csv"
grep -h "" "$R"/b1-*.csv | cut -d, -f8,9,13,20 >> "$R/log.txt"
pack
