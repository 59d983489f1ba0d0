#!/usr/bin/env bash
# Call 3 (if cuDNN attention became the default): the GPU classes that plan transformers, run with the choice on —
# ModelGpuTests (the zoo's models against ONNX Runtime), ShapeGpuTests (plans per shape and batch profiles),
# AttentionGpuTests and MlpGpuTests where time is left.
source bench/device/call-lib.sh "${CALL_SECONDS:-230}"
unpack tests || { pack; exit 1; }
export BATCHWISE_ATTENTION=${BATCHWISE_ATTENTION:-cudnn}
for c in ModelGpuTests ShapeGpuTests AttentionGpuTests MlpGpuTests; do
  [ "$(left)" -lt 20 ] && break
  q $c $(( $(left) - 8 )) env BATCHWISE_REQUIRE_GPU=1 "$TESTS" -class Batchwise.Cuda.Tests.Gpu.$c
  grep -E "Total:|\[FAIL\]" "$R/$c.txt" | head -8 >> "$R/log.txt"
done
pack
