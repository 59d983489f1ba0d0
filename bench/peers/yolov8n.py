#!/usr/bin/env python3
"""Batchwise's zoo:yolov8n (src/Batchwise/Zoo/YoloV8.cs) as plain torch.nn modules, layer for layer.

Same layout as Ultralytics' YOLOv8n (widths 16..256, C2f depths 1/2/2/1, SPPF, upsample+concat neck, decoupled head with
DFL) and the same decode as our ONNX graph: DFL softmax + fixed 1x1 conv over 16 bins, dist2bbox to xywh in pixels,
sigmoid class scores, output [batch, 4 + classes, anchors]. No ultralytics package and no download: random weights.

Module names follow the zoo's initializer names, so a state_dict key maps to an ONNX initializer by dropping ".conv"
(model.0.conv.weight -> model.0.weight, model.0.bn.weight -> model.0.bn.weight); `check_against_onnx` uses that to
compare every learned tensor's shape with a zoo export.

    python3 yolov8n.py                       # parameter and conv FLOP counts at 640
    python3 yolov8n.py --onnx yolov8n.onnx   # and every tensor against `batchwise zoo export zoo:yolov8n -o yolov8n.onnx`
    python3 yolov8n.py --size 64 --onnx y64.onnx --conformance cases && batchwise conformance cases --atol 1e-4
                                             # same function: the zoo graph on ONNX Runtime vs this module with its weights
"""
import argparse
import os
import sys

import torch
from torch import nn

REG_MAX = 16
STRIDES = (8, 16, 32)


class Conv(nn.Module):
    """Conv (no bias, padding k/2) + BatchNorm + SiLU: GraphBuilder.ConvBnAct(..., Activation.Silu)."""

    def __init__(self, c1, c2, k=1, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-5)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 Conv units, with the input added when `shortcut`."""

    def __init__(self, c, shortcut):
        super().__init__()
        self.cv1 = Conv(c, c, 3, 1)
        self.cv2 = Conv(c, c, 3, 1)
        self.add = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """cv1 to 2c channels, split in halves, n bottlenecks chained on the last half, concat all, cv2."""

    def __init__(self, c1, c2, n, shortcut):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))
        self.cv2 = Conv((2 + n) * self.c, c2, 1, 1)

    def forward(self, x):
        parts = list(self.cv1(x).split((self.c, self.c), 1))
        for m in self.m:
            parts.append(m(parts[-1]))
        return self.cv2(torch.cat(parts, 1))


class SPPF(nn.Module):
    """cv1 to c1/2, three chained MaxPool k5 s1 p2, concat the four, cv2."""

    def __init__(self, c1, c2):
        super().__init__()
        c = c1 // 2
        self.cv1 = Conv(c1, c, 1, 1)
        self.cv2 = Conv(4 * c, c2, 1, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        y = self.cv1(x)
        p1 = self.pool(y)
        p2 = self.pool(p1)
        return self.cv2(torch.cat((y, p1, p2, self.pool(p2)), 1))


class Detect(nn.Module):
    """Decoupled head (box: 4 x 16 distance bins, class scores) on three levels, DFL and dist2bbox decode."""

    def __init__(self, channels, classes, size):
        super().__init__()
        self.classes = classes
        box = max(16, channels[0] // 4, REG_MAX * 4)
        cls = max(channels[0], min(classes, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(c, box, 3), Conv(box, box, 3), nn.Conv2d(box, 4 * REG_MAX, 1)) for c in channels)
        self.cv3 = nn.ModuleList(
            nn.Sequential(Conv(c, cls, 3), Conv(cls, cls, 3), nn.Conv2d(cls, classes, 1)) for c in channels)
        # The DFL conv is fixed (weights 0..15), as in Ultralytics: a buffer, not a learned parameter.
        self.register_buffer("dfl_weight", torch.arange(REG_MAX, dtype=torch.float32).view(1, REG_MAX, 1, 1))
        points, strides = anchor_grid(size)
        self.register_buffer("anchors", points)    # [2, A]: x then y, cell centres in grid units
        self.register_buffer("strides", strides)   # [1, A]
        self.dynamic = False

    def forward(self, xs):
        b = xs[0].shape[0]
        flat = [torch.cat((cv2(x), cv3(x)), 1).view(b, 4 * REG_MAX + self.classes, -1)
                for x, cv2, cv3 in zip(xs, self.cv2, self.cv3)]
        box, cls = torch.cat(flat, 2).split((4 * REG_MAX, self.classes), 1)
        bins = box.view(b, 4, REG_MAX, -1).transpose(2, 1).softmax(1)              # [b, 16, 4, A]
        distance = nn.functional.conv2d(bins, self.dfl_weight.to(bins.dtype)).view(b, 4, -1)
        lt, rb = distance.chunk(2, 1)
        if self.dynamic:
            # As Ultralytics' make_anchors: the grid from the feature maps' own sizes, so one export takes any image size.
            anchors, strides = make_anchors(xs)
        else:
            anchors, strides = self.anchors, self.strides
        anchors = anchors.to(distance.dtype)
        x1y1, x2y2 = anchors - lt, anchors + rb
        boxes = torch.cat(((x1y1 + x2y2) * 0.5, x2y2 - x1y1), 1) * strides.to(distance.dtype)
        return torch.cat((boxes, cls.sigmoid()), 1)


def make_anchors(xs):
    """Anchor centres [2, A] and strides [1, A] from the feature maps' shapes (traced as Shape/Range in an export)."""
    points, strides = [], []
    for x, s in zip(xs, STRIDES):
        h, w = x.shape[2], x.shape[3]
        gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5, indexing="ij")
        points.append(torch.stack((gx.flatten(), gy.flatten())))
        strides.append(torch.ones(1, gx.numel()) * float(s))
    return torch.cat(points, 1), torch.cat(strides, 1)


def export_any_size(path, size=640, opset=17, seed=0):
    """Exports YOLOv8n with dynamic batch, height and width (anchors computed from shapes, as Ultralytics exports with
    dynamic=True): the shape-derived subgraph an engine must fold for each new image size."""
    torch.manual_seed(seed)
    model = YoloV8n(size).eval()
    model.model[22].dynamic = True
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, 3, size, size),), path, dynamo=False, opset_version=opset,
                          input_names=["images"], output_names=["output0"],
                          dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}},
                          do_constant_folding=True)
    return path


def anchor_grid(size):
    xs, ys, ss = [], [], []
    for s in STRIDES:
        n = size // s
        gy, gx = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
        xs.append(gx.flatten() + 0.5)
        ys.append(gy.flatten() + 0.5)
        ss.append(torch.full((n * n,), float(s)))
    return torch.stack((torch.cat(xs), torch.cat(ys))), torch.cat(ss).view(1, -1)


class YoloV8n(nn.Module):
    """zoo:yolov8n: input [batch, 3, size, size], output [batch, 4 + classes, anchors]."""

    def __init__(self, size=640, classes=80):
        super().__init__()
        if size % 32:
            raise ValueError(f"yolov8n needs an input size divisible by 32, got {size}")
        self.model = nn.ModuleList([
            Conv(3, 16, 3, 2),            # 0  P1/2
            Conv(16, 32, 3, 2),           # 1  P2/4
            C2f(32, 32, 1, True),         # 2
            Conv(32, 64, 3, 2),           # 3  P3/8
            C2f(64, 64, 2, True),         # 4
            Conv(64, 128, 3, 2),          # 5  P4/16
            C2f(128, 128, 2, True),       # 6
            Conv(128, 256, 3, 2),         # 7  P5/32
            C2f(256, 256, 1, True),       # 8
            SPPF(256, 256),               # 9
            nn.Upsample(scale_factor=2.0, mode="nearest"),  # 10
            nn.Identity(),                # 11 concat with 6
            C2f(384, 128, 1, False),      # 12
            nn.Upsample(scale_factor=2.0, mode="nearest"),  # 13
            nn.Identity(),                # 14 concat with 4
            C2f(192, 64, 1, False),       # 15 P3 out
            Conv(64, 64, 3, 2),           # 16
            nn.Identity(),                # 17 concat with 12
            C2f(192, 128, 1, False),      # 18 P4 out
            Conv(128, 128, 3, 2),         # 19
            nn.Identity(),                # 20 concat with 9
            C2f(384, 256, 1, False),      # 21 P5 out
            Detect((64, 128, 256), classes, size),  # 22
        ])

    def forward(self, x):
        m = self.model
        x = m[1](m[0](x))
        x = m[2](x)
        p3 = m[4](m[3](x))
        p4 = m[6](m[5](p3))
        p5 = m[9](m[8](m[7](p4)))
        h12 = m[12](torch.cat((m[10](p5), p4), 1))
        out3 = m[15](torch.cat((m[13](h12), p3), 1))
        out4 = m[18](torch.cat((m[16](out3), h12), 1))
        out5 = m[21](torch.cat((m[19](out4), p5), 1))
        return m[22]([out3, out4, out5])


def learned_parameters(model):
    """Learned weights as torch and papers count them (Ultralytics' 3,151,904 for YOLOv8n without the DFL conv)."""
    return sum(p.numel() for p in model.parameters())


def zoo_learned_parameters(model, size):
    """What Batchwise's LearnedParameterCount gives for zoo:yolov8n: every float initializer of rank >= 1 except
    BatchNormalization statistics, so besides the learned weights also the fixed DFL weight (16), the anchor points
    (2 x A), the anchor strides (A) and the two Resize scales tensors (2 x 4)."""
    anchors = sum((size // s) ** 2 for s in STRIDES)
    return learned_parameters(model) + REG_MAX + 2 * anchors + anchors + 2 * 4


def conv_flops(model, size, batch=1):
    """FLOPs (2 x multiply-adds) of every convolution, by forward hooks: the bulk of the network's work."""
    total = [0]

    def hook(module, inputs, output):
        k = module.kernel_size[0] * module.kernel_size[1]
        total[0] += 2 * output.numel() * (module.in_channels // module.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(batch, 3, size, size))
    for h in handles:
        h.remove()
    # The DFL 1x1 conv runs through the functional API: 16 bins x 4 sides x anchors.
    anchors = sum((size // s) ** 2 for s in STRIDES)
    return total[0] + 2 * batch * REG_MAX * 4 * anchors


def onnx_key(torch_key):
    """state_dict key -> the zoo's initializer name."""
    return torch_key.replace(".conv.weight", ".weight")


def check_against_onnx(model, onnx_path):
    """Compares every learned tensor (name and shape) with a zoo export; returns a list of mismatches."""
    import onnx  # only needed for this check

    graph = onnx.load(onnx_path).graph
    ours = {t.name: tuple(t.dims) for t in graph.initializer}
    problems = []
    seen = set()
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") or key.startswith("model.22.") and key.split(".")[-1] in ("anchors", "strides", "dfl_weight"):
            continue
        name = onnx_key(key)
        seen.add(name)
        if name not in ours:
            problems.append(f"{key}: no initializer {name} in {onnx_path}")
        elif ours[name] != tuple(value.shape):
            problems.append(f"{key}: torch {tuple(value.shape)} vs ours {ours[name]}")
    convs = [n for n in graph.node if n.op_type == "Conv"]
    learned = {n.input[1] for n in convs} | {n.input[2] for n in convs if len(n.input) > 2}
    missing = sorted(learned - seen - {"model.22.dfl.conv.weight"})
    problems += [f"ours has {name}, torch has no such tensor" for name in missing]
    return problems


def load_zoo_weights(model, onnx_path):
    """Copies a zoo export's weights into the module (by the names above); the fixed DFL, anchor and stride tensors
    must already agree. After this the module computes the zoo graph's function, up to float rounding."""
    import onnx
    from onnx import numpy_helper

    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(onnx_path).graph.initializer}
    state = model.state_dict()
    for key in state:
        if key.endswith("num_batches_tracked"):
            continue
        name = {"model.22.dfl_weight": "model.22.dfl.conv.weight", "model.22.anchors": "head.anchors",
                "model.22.strides": "head.strides"}.get(key, onnx_key(key))
        value = torch.from_numpy(weights[name].copy())
        if key.startswith("model.22.") and name.startswith(("head.", "model.22.dfl")):
            if not torch.equal(value, state[key]):
                raise ValueError(f"{key} differs from the zoo's {name}")
            continue
        state[key] = value
    model.load_state_dict(state)
    return model


def write_conformance_case(onnx_path, out_dir, size, batch=2, seed=1):
    """ONNX backend-test layout: the zoo export as model.onnx, a seeded input and torch's output with the zoo's weights.
    `batchwise conformance OUT_DIR --engine ort` then runs the zoo graph against this module."""
    import shutil

    from onnx import numpy_helper

    case = os.path.join(out_dir, f"test_yolov8n_{size}")
    data = os.path.join(case, "test_data_set_0")
    os.makedirs(data, exist_ok=True)
    shutil.copyfile(onnx_path, os.path.join(case, "model.onnx"))
    model = load_zoo_weights(YoloV8n(size).eval(), onnx_path)
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = model(x)
    for name, value, arg in (("input_0.pb", x, "images"), ("output_0.pb", y, "output0")):
        with open(os.path.join(data, name), "wb") as f:
            f.write(numpy_helper.from_array(value.numpy(), arg).SerializeToString())
    return case


def self_check(size=640, onnx_path=None, zoo_count=None, out=sys.stdout):
    """Prints torch's and ours parameter counts (and FLOPs); returns False on any mismatch."""
    model = YoloV8n(size).eval()
    torch_params = learned_parameters(model)
    expected_zoo = zoo_learned_parameters(model, size)
    flops = conv_flops(model, size)
    print(f"yolov8n@{size}: torch learned parameters {torch_params:,}; as Batchwise counts them (+ DFL, anchors, strides, "
          f"scales) {expected_zoo:,}; conv GFLOPs at b=1 {flops / 1e9:.2f}", file=out)
    ok = True
    if zoo_count is not None:
        same = zoo_count == expected_zoo
        ok &= same
        print(f"yolov8n@{size}: zoo export reports {zoo_count:,} parameters: {'match' if same else 'MISMATCH'}", file=out)
    if onnx_path:
        problems = check_against_onnx(model, onnx_path)
        ok &= not problems
        for p in problems:
            print("  MISMATCH " + p, file=out)
        if not problems:
            print(f"yolov8n@{size}: every learned tensor matches {onnx_path} by name and shape", file=out)
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--onnx", help="a zoo export of the same size to compare every tensor with")
    p.add_argument("--zoo-count", type=int, help="the parameter count `batchwise zoo export` printed")
    p.add_argument("--export-any-size", metavar="FILE", help="export an ONNX model with dynamic batch, height and width to FILE and exit")
    p.add_argument("--conformance", metavar="DIR",
                   help="with --onnx: write a node-test case (zoo weights loaded here, torch's output) for `batchwise conformance DIR`")
    args = p.parse_args()
    if args.export_any_size:
        print(export_any_size(args.export_any_size, args.size))
        return
    if args.conformance:
        if not args.onnx:
            p.error("--conformance needs --onnx")
        print(write_conformance_case(args.onnx, args.conformance, args.size))
    if not self_check(args.size, args.onnx, args.zoo_count):
        sys.exit("yolov8n.py: the torch model does not match the zoo's")


if __name__ == "__main__":
    main()
