#!/usr/bin/env bash
# Session 19, call 4: issue 12's shared-memory points with a third batch in flight per instance (--pipeline-depth 3),
# with 2 and 3 instances, beside the defaults, then the offline references (bench/device/serve-ab.sh).
source bench/device/call-lib.sh 300
unpack || exit 1
CLI="$CLI" OUT="$R/ab" VARIANTS="|--pipeline-depth 3|--instances 3 --pipeline-depth 3" CUDA_C=512,1024 SYSTEM_C=512,1024 timeout "$(lim 260)" bash bench/device/serve-ab.sh > "$R/ab.log" 2>&1
t "serve-ab exit $?"
grep -hE "^##|^concurrency [0-9]+: [0-9]|│ *64 " "$R/ab/serve-ab.txt" | cut -c1-120 >> "$R/log.txt"
pack
