#!/usr/bin/env python3
"""Issue 15's device-side acceptance suite: real architectures exported the way users export them, run on the cuda
engine and checked against ONNX Runtime on the CPU.

Hugging Face transformers built from their configs (random weights, nothing downloads; fewer layers than the published
checkpoints, every other setting theirs) and timm image models (random weights), exported with `torch.onnx.export`
(TorchScript exporter, opset 17, dynamic batch and sequence axes, constant folding on: what `optimum` and most
tutorials do). Then, per model, `batchwise compare MODEL --engines ort,cuda` in fp32 and in fp16, with the same inputs
for both engines (token ids in the vocabulary and an attention mask with padding, written as .npy files; images are
seeded normal noise).

    python3 bench/device/real_exports.py --cli PATH/Batchwise.Cli --out OUT [--only bert,resnet50] [--jobs 4]

Writes OUT/exports.md (one table: export, operators, fp32 and fp16 verdicts, the first line of any refusal) and
OUT/exports.json; the exported models stay in --work (default /tmp/batchwise-exports). Verdicts:
fp32 passes at rtol 1e-3 / atol 1e-4 elementwise (deep transformers on two engines differ by accumulation order;
the zoo's own models are held to 1e-4 by the GPU tests) and fp16 at cosine >= 0.999 for every output.
Exit status 0 when every model that exported ran and passed on cuda in both precisions, else 1.
"""
import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
import traceback

SEQ = 128
BATCH = 2
OPSET = 17

# name -> (family, transformers config class, model class, config overrides)
HF = {
    "bert": ("encoder", "BertConfig", "BertModel", {}),
    "distilbert": ("encoder", "DistilBertConfig", "DistilBertModel", {"n_layers": 4}),
    "roberta": ("encoder", "RobertaConfig", "RobertaModel", {}),
    "albert": ("encoder", "AlbertConfig", "AlbertModel", {}),
    "electra": ("encoder", "ElectraConfig", "ElectraModel", {}),
    "deberta-v2": ("encoder", "DebertaV2Config", "DebertaV2Model", {}),
    "mobilebert": ("encoder", "MobileBertConfig", "MobileBertModel", {}),
    "t5-encoder": ("encoder", "T5Config", "T5EncoderModel", {"num_layers": 4}),
    "gpt2": ("decoder", "GPT2Config", "GPT2Model", {"n_layer": 4}),
    "opt": ("decoder", "OPTConfig", "OPTModel", {}),
    "llama": ("decoder", "LlamaConfig", "LlamaModel",
              {"hidden_size": 512, "intermediate_size": 1376, "num_attention_heads": 8, "num_key_value_heads": 4}),
    "vit-hf": ("vision", "ViTConfig", "ViTModel", {}),
}
HF_LAYERS = 4  # num_hidden_layers where the config has it

TIMM = [
    "resnet50", "resnext50_32x4d", "regnetx_016", "regnety_016", "mobilenetv3_large_100", "efficientnet_b0",
    "densenet121", "convnext_tiny", "vit_small_patch16_224", "deit_small_patch16_224",
    "swin_tiny_patch4_window7_224", "mixer_b16_224", "mobilevit_s", "ghostnet_100",
]


def hf_model(name, attn_implementation=None):
    """The Hugging Face model NAME from its config (random weights, seed 0), in eval mode: (family, config, model).
    attn_implementation (e.g. "sdpa") is asked of transformers; bench/peers/world.py times PyTorch with it."""
    import torch
    import transformers

    family, config_name, model_name, overrides = HF[name]
    config = getattr(transformers, config_name)()
    if hasattr(config, "num_hidden_layers") and "num_layers" not in overrides and "n_layer" not in overrides \
            and "n_layers" not in overrides:
        config.num_hidden_layers = HF_LAYERS
    for key, value in overrides.items():
        setattr(config, key, value)
    if hasattr(config, "use_cache"):
        config.use_cache = False
    torch.manual_seed(0)
    model_class = getattr(transformers, model_name)
    if attn_implementation:
        model = model_class._from_config(config, attn_implementation=attn_implementation)
    else:
        model = model_class(config)
    return family, config, model.eval()


def timm_model(name):
    """The timm model NAME (random weights, seed 0), in eval mode, and its input size (C, H, W) from its config."""
    import torch
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    # Some timm models zero-initialise their head (MLP-Mixer): a zero output would agree with anything, so give every
    # all-zero weight matrix random values (biases and norms keep their initialisation).
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2 and not p.any():
                p.normal_(0.0, 0.02)
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", {}) or {}
    return model, tuple(cfg.get("input_size", (3, 224, 224)))


def export_hf(name, work):
    import numpy as np
    import torch

    family, config, model = hf_model(name)
    case = os.path.join(work, name)
    inputs_dir = os.path.join(case, "inputs")
    os.makedirs(inputs_dir, exist_ok=True)
    path = os.path.join(case, "model.onnx")
    rng = np.random.default_rng(0)

    if family == "vision":
        size = config.image_size

        class Wrapper(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, pixel_values):
                return self.m(pixel_values=pixel_values).last_hidden_state

        pixels = rng.standard_normal((BATCH, 3, size, size)).astype(np.float32)
        np.save(os.path.join(inputs_dir, "pixel_values.npy"), pixels)
        args = (torch.from_numpy(pixels),)
        names = ["pixel_values"]
        axes = {"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch"}}
        shape_args = []
    else:
        class Wrapper(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        ids = rng.integers(0, config.vocab_size, size=(BATCH, SEQ), dtype=np.int64)
        mask = np.ones((BATCH, SEQ), dtype=np.int64)
        mask[1, SEQ - 40:] = 0  # the second sequence padded: masking paths run
        np.save(os.path.join(inputs_dir, "input_ids.npy"), ids)
        np.save(os.path.join(inputs_dir, "attention_mask.npy"), mask)
        args = (torch.from_numpy(ids), torch.from_numpy(mask))
        names = ["input_ids", "attention_mask"]
        axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                "last_hidden_state": {0: "batch", 1: "seq"}}
        shape_args = ["--shape", f"seq={SEQ}"]

    with torch.no_grad():
        torch.onnx.export(Wrapper(model), args, path, dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, do_constant_folding=True)
    return {"family": "hf-" + family, "path": path, "inputs": inputs_dir, "shape_args": shape_args}


def export_timm(name, work):
    import torch

    model, size = timm_model(name)
    case = os.path.join(work, name)
    os.makedirs(case, exist_ok=True)
    path = os.path.join(case, "model.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, *size),), path, dynamo=False, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, do_constant_folding=True)
    return {"family": "timm", "path": path, "inputs": None, "shape_args": []}


def export_one(kind, name, work):
    started = time.time()
    try:
        info = export_hf(name, work) if kind == "hf" else export_timm(name, work)
        import onnx
        model = onnx.load(info["path"], load_external_data=False)
        info["ops"] = sorted({n.op_type for n in model.graph.node})
        info["nodes"] = len(model.graph.node)
        info["export_s"] = round(time.time() - started, 1)
        info["export"] = "ok"
    except Exception as e:  # an export that fails is a row, not the end of the suite
        info = {"export": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0][:300],
                "trace": traceback.format_exc()[-2000:], "family": "hf" if kind == "hf" else "timm"}
    info["name"] = name
    return info


def run_compare(cli, info, precision, out_dir):
    report = os.path.join(out_dir, f"{info['name']}-{precision}.json")
    cmd = [cli, "compare", info["path"], "--engines", "ort,cuda", "-b", str(BATCH), "--rtol", "1e-3", "--atol", "1e-4",
           "--json", report] + info["shape_args"]
    if info["inputs"]:
        cmd += ["--inputs", info["inputs"]]
    if precision == "fp16":
        cmd += ["--precision", "fp16"]
    started = time.time()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        code, text = done.returncode, (done.stdout + done.stderr)
    except subprocess.TimeoutExpired:
        code, text = 124, "timed out after 240 s"
    seconds = round(time.time() - started, 1)
    result = {"exit": code, "seconds": seconds, "command": " ".join(cmd)}
    with open(os.path.join(out_dir, f"{info['name']}-{precision}.log"), "w") as f:
        f.write(" ".join(cmd) + "\n" + text)
    if os.path.exists(report) and code in (0, 3):
        with open(report) as f:
            data = json.load(f)
        outputs = data.get("outputs", [])
        # The report writes NaN and infinities as strings; a NaN cosine means the candidate has NaN/inf where the
        # reference does not, which no threshold may pass.
        cosines = [float(o.get("cosine") if o.get("cosine") is not None else "nan") for o in outputs]
        result["cosine"] = float("nan") if not cosines or any(math.isnan(c) for c in cosines) else min(cosines)
        result["max_abs"] = max((float(o.get("max_abs_error", 0.0)) for o in outputs), default=0.0)
        result["max_rel"] = max((float(o.get("max_rel_error", 0.0)) for o in outputs), default=0.0)
        result["elementwise"] = all(o.get("passed") for o in outputs) and bool(outputs)
        dead = [n for n in data.get("notes", []) if "proves nothing" in n]
        result["passed"] = not dead and (result["elementwise"] if precision == "fp32" else result["cosine"] >= 0.999)
        result["verdict"] = "DEAD OUTPUT" if dead else ("PASS" if result["passed"] else "FAIL")
        if dead:
            result["message"] = dead[0][:300]
        elif math.isnan(result["cosine"]):
            result["message"] = "NaN or infinity in the cuda output where ONNX Runtime has none"
    else:
        errors = [l for l in text.splitlines() if l.startswith("error") or "rror:" in l]
        result["verdict"] = "REFUSED" if code == 2 else ("TIMEOUT" if code == 124 else f"EXIT {code}")
        result["message"] = (errors[0] if errors else (text.strip().splitlines() or [""])[-1])[:300]
        result["passed"] = False
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default="/tmp/batchwise-exports")
    parser.add_argument("--only", default="")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--precisions", default="fp32,fp16")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    only = {s for s in args.only.split(",") if s}
    jobs = [("hf", n) for n in HF if not only or n in only] + [("timm", n) for n in TIMM if not only or n in only]

    versions = {}
    for module in ("torch", "transformers", "timm", "onnx", "onnxruntime"):
        try:
            versions[module] = __import__(module).__version__
        except Exception as e:
            versions[module] = f"missing ({type(e).__name__})"
    print("versions:", versions, flush=True)

    # Exports on the CPU in parallel processes (each single-threaded in torch), then the compares one at a time.
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        infos = list(pool.map(export_one, [k for k, _ in jobs], [n for _, n in jobs], [args.work] * len(jobs)))
    for info in infos:
        print(f"export {info['name']}: {info['export']} {info.get('export_s', '')} {info.get('error', '')}", flush=True)

    rows = []
    for info in infos:
        row = dict(info)
        row.pop("trace", None)
        if info["export"] == "ok":
            for precision in args.precisions.split(","):
                row[precision] = run_compare(args.cli, info, precision, args.out)
                r = row[precision]
                print(f"{info['name']} {precision}: {r['verdict']} cos={r.get('cosine', '-')} "
                      f"rel={r.get('max_rel', '-')} {r.get('message', '')} ({r['seconds']} s)", flush=True)
        rows.append(row)

    with open(os.path.join(args.out, "exports.json"), "w") as f:
        json.dump({"versions": versions, "opset": OPSET, "batch": BATCH, "seq": SEQ, "models": rows}, f, indent=1)
    with open(os.path.join(args.out, "exports.md"), "w") as f:
        f.write(f"versions: {versions}; opset {OPSET}; batch {BATCH}; sequence {SEQ}\n\n")
        f.write("| model | family | export | nodes | fp32 vs ort (max rel, cosine) | fp16 vs ort (cosine) | note |\n")
        f.write("|---|---|---|---|---|---|---|\n")
        for row in rows:
            cells = []
            for precision in ("fp32", "fp16"):
                r = row.get(precision)
                if not r:
                    cells.append("-")
                elif "cosine" in r:
                    cells.append(f"{r['verdict']} ({r['max_rel']:.1e}, {r['cosine']:.6f})" if precision == "fp32"
                                 else f"{r['verdict']} ({r['cosine']:.6f})")
                else:
                    cells.append(r["verdict"])
            note = row.get("error") or next((row[p].get("message") for p in ("fp32", "fp16")
                                             if row.get(p) and row[p].get("message")), "")
            f.write(f"| {row['name']} | {row['family']} | {row['export']} | {row.get('nodes', '')} | {cells[0]} | "
                    f"{cells[1]} | {note or ''} |\n")
    ok = [r for r in rows if r["export"] == "ok"]
    passed = [r for r in ok if all(r.get(p, {}).get("passed") for p in args.precisions.split(","))]
    summary = f"{len(rows)} models, {len(ok)} exported, {len(passed)} passed on cuda in {args.precisions}"
    print(summary, flush=True)
    with open(os.path.join(args.out, "exports.md"), "a") as f:
        f.write(f"\n{summary}\n")
    return 0 if ok and len(passed) == len(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
