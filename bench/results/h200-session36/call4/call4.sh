#!/usr/bin/env bash
# Session 36, call 4: the publish of 34f1249 (the convolution workspace limit 2,048 MB by default): the explain study's
# first rows again (ResNet-50 and ResNet-18, fp16 and fp32, thin batches), whose fp32 rows failed in call 1 where the
# engine slowed from b=64 to b=256; the ceilings and rate tables measured afresh under the new limit.
source bench/device/call-lib.sh 175
unpack || { pack; exit 1; }
CLI=$CLI OUT=$R/explain BUDGET=$(( $(left) - 15 )) THIN=1 bash bench/explain-gpu.sh > "$R/explain-run.txt" 2>&1
t "explain exit $?"
rm -rf "$R/explain/cache"
pack
