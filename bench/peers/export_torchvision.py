#!/usr/bin/env python3
"""Export torchvision models (random weights, no download) to ONNX with a dynamic batch axis.

Each model is written in ONNX's backend-test layout, so Batchwise can check an engine against PyTorch's own output:

    OUT/test_resnet50/model.onnx
    OUT/test_resnet50/test_data_set_0/input_0.pb    (a seeded batch of --check-batch images)
    OUT/test_resnet50/test_data_set_0/output_0.pb   (PyTorch fp32 output for it, TF32 off)

Then, on the GPU machine:

    batchwise conformance OUT --engine cuda --atol 1e-4 --rtol 1e-3     # engine vs PyTorch
    batchwise compare OUT/test_resnet50/model.onnx --engines ort,cuda -b 8   # engine vs ONNX Runtime

Needs torch, torchvision, onnx; onnxruntime (optional) double-checks the file against PyTorch.
Prints one line per model: the model path.
"""
import argparse
import os
import sys

import numpy as np
import onnx
import torch
import torchvision
from onnx import numpy_helper

MODELS = {
    "resnet50": torchvision.models.resnet50,
    "mobilenet_v2": torchvision.models.mobilenet_v2,
}


def export(name, out_dir, opset, size, check_batch, seed):
    torch.manual_seed(seed)
    model = MODELS[name](weights=None).eval()
    case_dir = os.path.join(out_dir, f"test_{name}")
    data_dir = os.path.join(case_dir, "test_data_set_0")
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(case_dir, "model.onnx")

    dummy = torch.randn(1, 3, size, size)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (dummy,),
            path,
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=True,
        )
    onnx.checker.check_model(path)

    # Reference output in true fp32 on the CPU (no TF32, deterministic), for the node-test layout.
    x = torch.randn(check_batch, 3, size, size, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        y = model(x)
    x_np, y_np = x.numpy(), y.numpy()
    with open(os.path.join(data_dir, "input_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(x_np, "input").SerializeToString())
    with open(os.path.join(data_dir, "output_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(y_np, "logits").SerializeToString())

    try:
        import onnxruntime as ort
    except ImportError:
        print(f"{name}: onnxruntime not installed; skipped the ONNX Runtime check", file=sys.stderr)
    else:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x_np})[0]
        err = float(np.max(np.abs(got - y_np)))
        scale = float(np.max(np.abs(y_np)))
        top1 = float(np.mean(np.argmax(got, 1) == np.argmax(y_np, 1)))
        print(f"{name}: onnxruntime vs torch at batch {check_batch}: max abs {err:.3g} (output scale {scale:.3g}), top-1 agreement {top1:.0%}", file=sys.stderr)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", default="peers-onnx", help="output folder (default: peers-onnx)")
    p.add_argument("--models", default="resnet50,mobilenet_v2", help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--size", type=int, default=224, help="image height and width")
    p.add_argument("--check-batch", type=int, default=4, help="batch size of the stored reference input/output")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    os.makedirs(args.out, exist_ok=True)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    for name in names:
        print(export(name, args.out, args.opset, args.size, args.check_batch, args.seed), flush=True)


if __name__ == "__main__":
    main()
