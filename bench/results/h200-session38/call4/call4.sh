#!/usr/bin/env bash
# Session 38, call 4: the five peer exports of the explain study with their float weights zeroed (graph, shapes and
# small constants kept), xz-compressed, so explain's predictions can be replayed off the device against call 2's
# measured points and ceilings (`explain MODEL --ceilings-file ... --bench ...`): the prediction reads the graph, not
# the weights' values.
set -uo pipefail
R=$OUT/r; mkdir -p "$R"
PEERS=resnext50_32x4d,efficientnet_b0,convnext_tiny,vit_small_patch16_224,regnetx_016
timeout 150 python3 bench/peers/world.py --export-only --work /tmp/exports --out "$R/exports" --models $PEERS --jobs 5 > "$R/exports.log" 2>&1
echo "export exit $?"
python3 - <<'PY'
import glob, os, onnx, numpy as np
from onnx import numpy_helper
out = os.environ["OUT"] + "/r"
for path in glob.glob("/tmp/exports/*/model.onnx"):
    name = path.split("/")[-2]
    m = onnx.load(path)
    for t in m.graph.initializer:
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16) and np.prod(t.dims) > 64:
            a = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(np.zeros_like(a), t.name))
    onnx.save(m, f"{out}/{name}.onnx")
    print(name, os.path.getsize(f"{out}/{name}.onnx"))
PY
cd "$R" && xz -9 *.onnx && ls -la
