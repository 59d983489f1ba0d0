#!/usr/bin/env python3
"""The peer table that represents the world (issue 16, item 1): Batchwise fp16 against PyTorch's best on timm image
models and Hugging Face transformers it was never tuned for, exported on the GPU machine, in one run.

For each model, one GPU job at a time:
  batchwise bench MODEL.onnx --engine cuda --precision fp16 -b 1,64 [--shape seq=128]
  PyTorch in fp16, eager and captured into a CUDA graph (timm: channels-last; transformers: SDPA attention where
  transformers has it; for those whose mask is padding or causal alone, also SDPA given no mask, captured), timed
  as torch_bench.py times (CUDA events, windows, median); the best variant is "PyTorch's best"
then ONE table (world.md + world.json): model, family, batch, Batchwise, every PyTorch variant, the best, the ratio and the
verdict against the issue's 1.2x. A refusal, a failure or a skip is a row with its first line, never dropped.
`--profile-worst N` then profiles the N models with the lowest ratios at b=64 (`batchwise bench --profile`) and puts
their top 15 layers by time in the same table: what the gap-closing work reads.

    python3 bench/peers/world.py --cli CLI --out OUT/world --work WORK/exports --profile-worst 3   # GPU machine
    python3 bench/peers/world.py --table-only OUT/world                                           # re-render, anywhere

Exports reuse bench/device/real_exports.py (same models, same export settings) and are cached in --work: a model whose
model.onnx is there (from an earlier phase of the same device call, e.g. `exports`) is not exported again.
Raw files in OUT: context.json, export-NAME.json, bw-NAME.{json,log}, torch-NAME.{jsonl,log}, torch-worker.log,
profile-NAME.{json,layers.csv,log}.
"""
import argparse
import concurrent.futures
import csv
import datetime
import json
import lzma
import multiprocessing
import os
import shlex
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "device"))
import compare  # noqa: E402  (read_batchwise, batchwise_point, Runner, gpu_context: the zoo peer table's pieces)
import real_exports  # noqa: E402  (the export code and model builders; importable without torch)

TARGET = 1.2  # issue 16: every architecture at >= 1.2x PyTorch's best at b=1 and at b=64
BATCHES = (1, 64)
PROFILE_BATCH = 64
PROFILE_TOP = 15


class Model:
    """One architecture: where it comes from (timm or hf), its name there and the family it stands for."""

    def __init__(self, kind, name, family):
        self.kind, self.name, self.family = kind, name, family

    @property
    def unit(self):
        return "seq/s" if self.kind == "hf" and real_exports.HF[self.name][0] != "vision" else "img/s"


_L = real_exports.HF_LAYERS
# In the order they run: the six families first, so a spent budget skips the extras.
MODELS = [
    Model("timm", "resnext50_32x4d", "ResNeXt (grouped 3x3)"),
    Model("timm", "regnetx_016", "RegNetX (grouped conv)"),
    Model("timm", "mobilenetv3_large_100", "MobileNetV3 (depthwise, SE, hard-swish)"),
    Model("timm", "efficientnet_b0", "EfficientNet (depthwise, SE, SiLU)"),
    Model("timm", "vit_small_patch16_224", "ViT-S/16 (attention, LayerNorm, GELU)"),
    Model("timm", "convnext_tiny", "ConvNeXt-T (7x7 depthwise, LayerNorm, MLP)"),
    Model("timm", "resnet50", "ResNet-50"),
    Model("hf", "bert", f"BERT encoder ({_L} layers, seq 128)"),
    Model("hf", "gpt2", f"GPT-2 decoder ({_L} layers, causal, seq 128)"),
    Model("timm", "swin_tiny_patch4_window7_224", "Swin-T (windowed attention)"),
    Model("hf", "vit-hf", f"ViT, Hugging Face ({_L} layers)"),
    Model("timm", "regnety_016", "RegNetY (grouped conv, SE)"),
    Model("timm", "deit_small_patch16_224", "DeiT-S (attention)"),
    Model("hf", "distilbert", "DistilBERT encoder (4 layers, seq 128)"),
    Model("timm", "densenet121", "DenseNet-121 (concatenation)"),
    Model("timm", "ghostnet_100", "GhostNet (cheap depthwise features)"),
    Model("timm", "mobilevit_s", "MobileViT-S (convolution + attention)"),
    Model("hf", "t5-encoder", "T5 encoder (4 layers, relative position bias, seq 128)"),
    Model("hf", "llama", f"Llama decoder ({_L} layers, RMSNorm, RoPE, GQA, seq 128)"),
]
BY_NAME = {m.name: m for m in MODELS}


def pick(names):
    """The models named (comma-separated; empty: all), in MODELS' order; an unknown name is a ValueError."""
    wanted = [n for n in names.split(",") if n] if names else []
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    return [m for m in MODELS if not wanted or m.name in wanted]


# ---------------------------------------------------------------------------------------------------------------
# Exports (CPU, in parallel, before any GPU job), cached in the work folder


def cached_export(model, work):
    """The export info of a model.onnx already in WORK (an earlier phase or call), or None when there is none."""
    path = os.path.join(work, model.name, "model.onnx")
    if not os.path.exists(path):
        return None
    info = {"name": model.name, "family": model.kind, "path": path, "export": "ok", "cached": True,
            "shape_args": [] if model.unit == "img/s" else ["--shape", f"seq={real_exports.SEQ}"]}
    try:
        import onnx  # a file cut short by a killed export does not parse: export it again

        graph = onnx.load(path, load_external_data=False).graph
        info["ops"], info["nodes"] = sorted({n.op_type for n in graph.node}), len(graph.node)
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - unreadable: not a cache hit
        return None
    return info


def export_worker(argv, export_one=real_exports.export_one):
    """`world.py --export`: exports the models not cached in --work, writing OUT/export-NAME.json as each finishes."""
    p = argparse.ArgumentParser(prog="world.py --export")
    p.add_argument("--export", action="store_true")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--models", default="")
    p.add_argument("--jobs", type=int, default=4)
    args = p.parse_args(argv)
    models = pick(args.models)
    os.makedirs(args.work, exist_ok=True)

    def done(info):
        with open(os.path.join(args.out, f"export-{info['name']}.json"), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
        print(f"export {info['name']}: {info['export']}{' (cached)' if info.get('cached') else ''} "
              f"{info.get('export_s', '')} {info.get('error', '')}".rstrip(), flush=True)

    todo = []
    for m in models:
        info = cached_export(m, args.work)
        if info:
            done(info)
        else:
            todo.append(m)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    if args.jobs <= 1 or len(todo) <= 1:
        for m in todo:
            done(export_one(m.kind, m.name, args.work))
        return 0
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(export_one, m.kind, m.name, args.work): m for m in todo}
        for future in concurrent.futures.as_completed(futures):
            m = futures[future]
            try:
                info = future.result()
            except Exception as e:  # noqa: BLE001 - a worker that died (e.g. out of memory) is that model's row
                info = {"name": m.name, "family": m.kind, "export": "failed", "error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}
            done(info)
    return 0


# ---------------------------------------------------------------------------------------------------------------
# PyTorch (GPU machine): one worker process for the whole run (torch, timm and transformers imported once), fed one
# model at a time on standard input; the driver kills it when a model runs past its limit and starts another.


def torch_variants(model, device):
    """[(variant, make(batch) -> zero-argument run)] for PyTorch fp16: eager, then the same captured in a CUDA graph;
    and notes (e.g. SDPA refused by this transformers for this model)."""
    import torch
    import torch_bench

    notes = []
    attention = None
    if model.kind == "timm":
        net, size = real_exports.timm_model(model.name)
        net = net.half().to(device).to(memory_format=torch.channels_last)
        prefix = "fp16-cl"

        def make(batch):
            x = torch.randn(batch, *size, device=device).half().contiguous(memory_format=torch.channels_last)
            return lambda: net(x)
    else:
        try:
            family, config, net = real_exports.hf_model(model.name, attn_implementation="sdpa")
        except Exception as e:  # noqa: BLE001 - transformers has no SDPA path for it: its own attention, said so
            notes.append(f"sdpa refused: {type(e).__name__}: {e}".splitlines()[0][:200])
            family, config, net = real_exports.hf_model(model.name)
        attention = getattr(net.config, "_attn_implementation", None) or "default-attn"
        net = net.half().to(device)
        prefix = f"fp16-{attention}"

        # The attention mask is all ones in Batchwise's inputs, so PyTorch gets none (the same function; transformers
        # drops an all-ones mask anyway, after a host-side check that a CUDA graph could not capture).
        def make(batch):
            if family == "vision":
                x = torch.randn(batch, 3, config.image_size, config.image_size, device=device).half()
                return lambda: net(pixel_values=x)
            ids = torch.randint(0, config.vocab_size, (batch, real_exports.SEQ), device=device)
            return lambda: net(input_ids=ids)

    def make_graph(batch):
        return torch_bench.capture(make(batch))

    variants = [(prefix, make), (prefix + "-graph", make_graph)]
    if model.kind == "hf" and model.name in UNMASKED_SDPA and attention == "sdpa":
        variants.append((prefix + "-unmasked-graph", lambda batch: unmasked_sdpa_graph(net, make, batch)))
    return variants, notes


# Models whose attention mask is padding or causal alone: with an all-ones padding mask, SDPA without a mask (causal where
# the module is) is the same function. Not T5 (its relative position bias travels as the mask).
UNMASKED_SDPA = ("bert", "distilbert", "vit-hf", "gpt2", "llama")
UNMASKED_ATTENTION = "sdpa_unmasked"
UNMASKED_COSINE = 0.9999


def unmasked_sdpa_graph(net, make, batch):
    """PyTorch's best for a transformer: eager SDPA's own call captured into a CUDA graph. transformers drops an all-ones
    mask only after a host-side check; while a stream captures it cannot check, so it builds the mask and SDPA leaves
    cuDNN's flash kernel for the fp32 math path (session 45: BERT b=64 3,498 us of kernels a run in the graph against
    eager's 1,292). Here the attention goes through transformers' own SDPA function with no mask (is_causal from the
    module, as eager's call has it), registered as an attention implementation; its output is checked against the
    model's with transformers' SDPA before it is captured, and a difference is an error, not a rate."""
    import torch
    import torch_bench
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    calls = [0]

    def forward(module, query, key, value, attention_mask, **kwargs):
        calls[0] += 1
        return sdpa_attention_forward(module, query, key, value, None, **kwargs)

    AttentionInterface.register(UNMASKED_ATTENTION, forward)
    run = make(batch)
    set_attention(net, "sdpa")
    expected = run()[0].float().flatten()
    set_attention(net, UNMASKED_ATTENTION)
    got = run()[0].float().flatten()
    # A model that cannot switch its attention (transformers only warns) would time the plain graph under this name.
    if calls[0] == 0:
        set_attention(net, "sdpa")
        raise RuntimeError(f"{type(net).__name__} did not call the registered attention (its implementation stayed {net.config._attn_implementation!r})")
    cosine = torch.nn.functional.cosine_similarity(expected, got, dim=0).item()
    if not cosine >= UNMASKED_COSINE:
        set_attention(net, "sdpa")
        raise RuntimeError(f"SDPA without the mask gave another output (cosine {cosine:.6f} against transformers' SDPA)")
    return torch_bench.capture(run)


def set_attention(net, name):
    """The model's attention implementation by name (transformers >= 4.56: set_attn_implementation)."""
    setter = getattr(net, "set_attn_implementation", None)
    if setter is not None:
        setter(name)
    else:
        net.config._attn_implementation = name


def torch_measure(request):
    """Yields one JSON-able line per (variant, batch): samples/s (median window) or the error."""
    import statistics

    import torch
    import torch_bench

    device = torch.device("cuda", 0)
    model = BY_NAME[request["name"]]
    context = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
               "cudnn": torch.backends.cudnn.version(), "cudnn_benchmark": torch.backends.cudnn.benchmark}
    for module in ("timm", "transformers"):
        try:
            context[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001
            context[module] = "missing"
    base = {"model": model.name, "kind": model.kind}
    try:
        torch.manual_seed(0)
        variants, notes = torch_variants(model, device)
    except Exception as e:  # noqa: BLE001 - the model could not be built: one line per point says why
        error = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        for batch in request["batches"]:
            yield dict(base, variant="fp16", batch=batch, error=error, **context)
        return
    for variant, make in variants:
        for batch in request["batches"]:
            line = dict(base, variant=variant, batch=batch)
            if notes:
                line["notes"] = notes
            run = None
            try:
                torch.manual_seed(0)
                with torch.inference_mode():
                    run = make(batch)
                iters, rates = torch_bench.measure(run, batch, request["warmup_seconds"], request["window_seconds"],
                                                   request["windows"])
                median = statistics.median(rates)
                line.update(images_per_s=round(median, 1), latency_ms=round(1000.0 * batch / median, 4),
                            windows=[round(r, 1) for r in rates], iters_per_window=iters,
                            peak_memory_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1))
            except torch.cuda.OutOfMemoryError:
                line["error"] = "out of memory"
            except Exception as e:  # noqa: BLE001 - one failed point must not lose the others
                line["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            finally:
                run = None
                try:
                    torch.cuda.synchronize(device)
                except Exception:  # noqa: BLE001 - a failed capture can leave an error here; the next point says more
                    pass
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            yield dict(line, **context)


def serve_torch(stream=sys.stdin, measure=None):
    """`world.py --torch-serve`: one JSON request a line on `stream`, {"name", "batches", "out", "windows",
    "window_seconds", "warmup_seconds"}; appends the result lines to "out", then writes "out.done". Ends at end of input."""
    if measure is None:
        import torch

        if not torch.cuda.is_available():
            sys.exit("world.py --torch-serve: no CUDA device visible to PyTorch")
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.cuda.set_device(0)
        measure = torch_measure
    for text in iter(stream.readline, ""):  # line by line as they come (no read-ahead)
        if not text.strip():
            continue
        request = json.loads(text)
        started = time.monotonic()
        fresh = False
        with open(request["out"], "a", encoding="utf-8") as out:
            for line in measure(request):
                out.write(json.dumps(line) + "\n")
                out.flush()
                # a failed capture or CUDA error can leave the context unusable: the next model gets a new process
                fresh = fresh or any(word in line.get("error", "") for word in ("CUDA", "captur", "cuda"))
        with open(request["out"] + ".done", "w", encoding="utf-8") as f:
            f.write(f"{time.monotonic() - started:.1f}\n")
        print(f"torch {request['name']}: {time.monotonic() - started:.1f} s" + (" (CUDA error: the next model gets a new worker)" if fresh else ""), flush=True)
        if fresh:
            return 0
    return 0


class TorchWorker:
    """The driver's side of serve_torch: starts the worker when needed, sends a model, waits for it within a limit,
    and kills the worker's whole process group when the limit passes (the next model starts a new worker)."""

    def __init__(self, python, log_path):
        self.python, self.log_path, self.proc, self.log = python, log_path, None, None

    def _start(self):
        self.log = open(self.log_path, "a", encoding="utf-8")
        self.proc = subprocess.Popen([self.python, os.path.abspath(__file__), "--torch-serve"], stdin=subprocess.PIPE,
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def measure(self, request, limit_s):
        """Returns 0 when the worker wrote request["out"].done in time, else why not ("timeout", "exit N", ...)."""
        for path in (request["out"], request["out"] + ".done"):
            if os.path.exists(path):
                os.remove(path)
        if limit_s < 5:
            return "skipped"
        deadline = time.monotonic() + limit_s
        try:
            if self.proc is None or self.proc.poll() is not None:
                self._start()
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError as e:  # a worker that died between models, or no python: say so, start afresh next time
            self.kill()
            return f"oserror {e}"
        while time.monotonic() < deadline:
            if os.path.exists(request["out"] + ".done"):
                os.remove(request["out"] + ".done")
                return 0
            code = self.proc.poll()
            if code is not None:
                self.kill()
                return f"exit {code}"
            time.sleep(0.05)
        self.kill()
        return "timeout"

    def kill(self):
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None

    def close(self):
        """Ends the worker at end of input (it exits by itself), or kills it after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


# ---------------------------------------------------------------------------------------------------------------
# Reading the raw files and the table


def read_export(out_dir, model):
    path = os.path.join(out_dir, f"export-{model.name}.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_profile(out_dir, model, batch=PROFILE_BATCH, top=PROFILE_TOP):
    """The top layers by time of profile-NAME.layers.csv at `batch`, or {"error": why} from its log; None when not run."""
    stem = os.path.join(out_dir, f"profile-{model.name}")
    csv_path = stem + ".layers.csv"
    if os.path.exists(csv_path):
        with open(csv_path, encoding="utf-8", newline="") as f:
            layers = [{"layer": r["layer"], "ms": float(r["ms"]), "share": float(r["share"]), "order": int(r["order"])}
                      for r in csv.DictReader(f) if int(r["batch"]) == batch]
        if layers:
            total = sum(layer["ms"] for layer in layers)
            ranked = sorted(layers, key=lambda layer: -layer["ms"])
            return {"batch": batch, "layers_total": len(layers), "total_ms": round(total, 4), "top": ranked[:top],
                    "top_share": round(sum(layer["share"] for layer in ranked[:top]), 4)}
    if os.path.exists(stem + ".log"):
        r = compare.read_batchwise(stem + ".json", stem + ".log")
        return {"error": r["status"] if r["status"] != "ok" else f"no layers at b={batch} in {os.path.basename(csv_path)}"}
    return None


def collect(out_dir, models):
    """The raw files of OUT: exports, Batchwise's points, PyTorch's points, profiles, the context and PyTorch's timed
    windows ({model: {(batch, variant): [per_s, ...]}})."""
    exports, batchwise, torch, profiles, windows = {}, {}, {}, {}, {}
    context = {}
    if os.path.exists(os.path.join(out_dir, "context.json")):
        with open(os.path.join(out_dir, "context.json"), encoding="utf-8") as f:
            context = json.load(f)
    for m in models:
        exports[m.name] = read_export(out_dir, m)
        stem = os.path.join(out_dir, f"bw-{m.name}")
        if os.path.exists(stem + ".log") or os.path.exists(stem + ".json"):
            r = compare.read_batchwise(stem + ".json", stem + ".log")
            batchwise[m.name] = r
            if r.get("batchwise_version") and "batchwise_version" not in context:
                context["batchwise_version"], context["engine"] = r["batchwise_version"], r.get("engine")
        jsonl, log = os.path.join(out_dir, f"torch-{m.name}.jsonl"), os.path.join(out_dir, f"torch-{m.name}.log")
        if os.path.exists(jsonl) or os.path.exists(log):
            torch[m.name], tc = compare.read_torch(jsonl, log)
            windows[m.name] = read_torch_windows(jsonl)
            for key in ("device", "torch", "cuda", "cudnn"):
                if tc.get(key) is not None:
                    context.setdefault(key, tc[key])
            versions = read_versions(jsonl)
            for key, value in versions.items():
                context.setdefault(key, value)
        profile = read_profile(out_dir, m)
        if profile is not None:
            profiles[m.name] = profile
    return exports, batchwise, torch, profiles, context, windows


def jsonl_records(path):
    """The JSON objects of a .jsonl file's lines (none when it is missing; lines that are not JSON skipped)."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for text in f:
            try:
                d = json.loads(text)
            except ValueError:
                continue
            if isinstance(d, dict):
                yield d


def read_torch_windows(jsonl):
    """{(batch, variant): the per-window rates} of a torch-NAME.jsonl's measured points."""
    return {(d["batch"], d["variant"]): d["windows"] for d in jsonl_records(jsonl) if d.get("windows") and "batch" in d and "variant" in d}


def read_versions(jsonl):
    """timm and transformers versions and notes (e.g. SDPA refused) from a torch-NAME.jsonl's first lines."""
    out = {}
    for d in jsonl_records(jsonl):
        for key in ("timm", "transformers"):
            if d.get(key):
                out.setdefault(key, d[key])
    return out


def torch_notes(out_dir, model):
    notes = set()
    for d in jsonl_records(os.path.join(out_dir, f"torch-{model.name}.jsonl")):
        notes.update(d.get("notes", []))
    return sorted(notes)


# A best PyTorch variant whose timed windows spread more than this (max - min over the median) moved within the run:
# its row's ratio says so (session 44: BERT b=64 eager 30,293 / 43,134 / 42,841, a 30% spread), and a pass there is not
# judged (session 48: DistilBERT b=64's eager peer spread 48% and 52% in two runs of one call).
UNSTEADY_PEER = 0.15

# A best PyTorch rate below this share of the same row's in a reference run (--reference, an earlier world.json on a card
# of the same name) is a peer that did not run at its speed: its row is not judged, whatever the ratio (session 48's H100:
# eager SDPA at b=64 took DistilBERT at 23,719 and BERT at 32,958 seq/s, against 46,590 and 44,331 the session before with
# the same versions, steady windows both times, while Batchwise's rates matched).
SLOW_PEER = 0.8


def reference_rates(path):
    """{"file", "date", "device", "rates": {model: {batch: best PyTorch per_s}}} from a world.json (or .json.xz)."""
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    if data.get("schema") != "batchwise.world":
        raise ValueError(f"{path} is not a world.json (schema {data.get('schema')!r})")
    rates = {}
    for r in data.get("rows", []):
        best = r.get("best_pytorch")
        if best and isinstance(best.get("per_s"), (int, float)):
            rates.setdefault(r["model"], {})[str(r["batch"])] = best["per_s"]
    c = data.get("context", {})
    return {"file": path, "date": c.get("date"), "device": c.get("device"), "rates": rates}


def build_rows(models, exports, batchwise, torch, batches=BATCHES, target=TARGET, windows=None, reference=None):
    rows = []
    for m in models:
        export = exports.get(m.name)
        for batch in batches:
            row = {"model": m.name, "source": m.kind, "family": m.family, "unit": m.unit, "batch": batch}
            if export is not None and export.get("export") == "skipped":
                row["batchwise"] = {"status": "skipped: " + (export.get("error") or "not exported")}
            elif export is not None and export.get("export") != "ok":
                row["batchwise"] = {"status": "export failed: " + (export.get("error") or "?")}
            elif export is None and m.name not in batchwise:
                row["batchwise"] = {"status": "not run: no export"}
            else:
                row["batchwise"] = compare.batchwise_point(batchwise.get(m.name), batch)
            tp = torch.get(m.name, {})
            known = list(dict.fromkeys(k[1] for k in tp if k != "all"))  # every variant the model's run reached
            # a variant this batch never reached (the run timed out or died) shows why the run ended
            row["pytorch"] = {v: tp.get((batch, v), tp.get("all", "not run")) for v in known} or {"fp16": tp.get("all", "not run")}
            if "all" in tp:
                row["pytorch_run_error"] = tp["all"]
            measured = {v: x for v, x in row["pytorch"].items() if isinstance(x, (int, float))}
            best = max(measured, key=measured.get) if measured else None
            row["best_pytorch"] = {"variant": best, "per_s": measured[best]} if best else None
            timed = (windows or {}).get(m.name, {}).get((batch, best)) if best else None
            if timed and len(timed) > 1 and measured[best] > 0:
                row["best_pytorch"]["windows"] = timed
                row["best_pytorch"]["spread"] = round((max(timed) - min(timed)) / measured[best], 3)
            known_rate = ((reference or {}).get("rates", {}).get(m.name, {}).get(str(batch))) if best else None
            if known_rate and measured[best] < SLOW_PEER * known_rate:
                row["best_pytorch"]["reference"] = known_rate
            ours = row["batchwise"].get("images_per_s")
            row["ratio"] = round(ours / measured[best], 3) if ours and best else None
            row["met"], row["verdict"] = verdict(row, target)
            rows.append(row)
    return rows


def verdict(row, target=TARGET):
    bw = row["batchwise"]
    if "images_per_s" not in bw:
        if bw["status"].startswith(("skipped", "not run")):  # the budget ran out before it: says nothing of Batchwise
            return None, "not judged: " + bw["status"].split(":")[0]
        if bw["status"].startswith("export failed"):  # PyTorch's exporter failed: nothing for Batchwise to run
            return None, "n/a: export failed"
        return False, "no: Batchwise " + bw["status"].split(":")[0]
    if row["best_pytorch"] is None:
        return None, "n/a: no PyTorch number"
    if row["ratio"] < target:
        return False, f"no: {row['ratio']:.2f}x < {target:g}x"
    if row["best_pytorch"].get("reference"):  # a pass against a peer far below its known speed says nothing
        return None, f"not judged: PyTorch at {row['best_pytorch']['per_s'] / row['best_pytorch']['reference']:.0%} of its reference"
    if row["best_pytorch"].get("spread", 0) > UNSTEADY_PEER:  # nor does one against a peer that moved within the run
        return None, f"not judged: PyTorch's windows spread {row['best_pytorch']['spread']:.0%}"
    return True, "yes"


def worst(rows, n):
    """The n models with the lowest ratios (any batch), lowest first."""
    out = []
    for r in sorted((r for r in rows if r["ratio"] is not None), key=lambda r: r["ratio"]):
        if r["model"] not in out:
            out.append(r["model"])
    return out[:n]


def queue_args(context):
    """bench's --queue as this run passed it ('' where each run was waited for: tables before session 50)."""
    q = int(context.get("queue") or 1)
    return f" --queue {q}" if q > 1 else ""


def queue_text(context):
    """How Batchwise's runs were issued, beside PyTorch's back-to-back windows."""
    q = int(context.get("queue") or 1)
    return (f" (its runs enqueued {q} at a time back to back, as PyTorch's windows are)" if q > 1
            else " (each run waited for before the next: a host round trip a run that PyTorch's windows do not pay)")


# BATCHWISE_ variables that say where things go or how tests behave, not how the engine runs a model.
NOT_ENGINE_SETTINGS = {"BATCHWISE_CACHE_DIR", "BATCHWISE_REPORT_DIR", "BATCHWISE_REQUIRE_GPU", "BATCHWISE_ONNX_NODE_TESTS"}


def engine_settings(environ):
    """The BATCHWISE_ variables of the environment the CLI inherits that change how the engine runs (a table run with
    one must say so: its rates are not the defaults')."""
    return {k: v for k, v in environ.items() if k.startswith("BATCHWISE_") and k not in NOT_ENGINE_SETTINGS}


def render_markdown(rows, context, profiles, models, notes_by_model=None, target=TARGET):
    footnote = compare.Footnotes()

    def bw_cell(cell, label):
        if "images_per_s" in cell:
            return compare.fmt_rate(cell["images_per_s"]) + ("" if cell.get("stable", True) else " (unstable)")
        status = cell["status"]
        if status == "not run":
            return status
        return status.split(":")[0] + " " + footnote.mark(status, label)

    def torch_cell(x, label):
        if isinstance(x, (int, float)):
            return compare.fmt_rate(x)
        return x if x == "not run" else "error " + footnote.mark(x, label)

    c = context
    lines = [f"# Batchwise vs PyTorch across architectures: {c.get('device', 'unknown device')}", ""]
    gpu = c.get("device", "?") + (f", driver {c['driver']}" if c.get("driver") else "") + (f", {c['memory']}" if c.get("memory") else "")
    lines.append(f"- GPU: {gpu}")
    if c.get("torch"):
        lines.append(f"- PyTorch {c['torch']} (timm {c.get('timm', '?')}, transformers {c.get('transformers', '?')}), "
                     f"CUDA {c.get('cuda', '?')}, cuDNN {compare.cudnn_text(c.get('cudnn'))}")
    lines += ["- " + line for line in compare.build_and_run_lines(c)]
    if c.get("batchwise_environment"):
        lines.append("- Batchwise's engine settings from the environment (not its defaults): "
                     + ", ".join(f"`{k}={v}`" for k, v in sorted(c["batchwise_environment"].items())))
    lines += [
        "",
        "Samples/s (images, or sequences of 128 tokens), fp16, random weights, inputs already on the GPU, concurrency 1. "
        "Models exported on this machine by bench/device/real_exports.py (timm; Hugging Face transformers from their "
        f"configs with {real_exports.HF_LAYERS} layers), opset {real_exports.OPSET}. Batchwise: `batchwise bench MODEL.onnx "
        f"--engine cuda --precision fp16{queue_args(c)}`{queue_text(c)}. PyTorch: fp16 eager and the same captured into a CUDA graph and replayed "
        "(timm: channels-last; transformers: SDPA attention where transformers has it, no attention mask: Batchwise's "
        f"is all ones; for {', '.join(UNMASKED_SDPA)} a third variant, \"unmasked\": the graph with transformers' SDPA "
        "call given no mask, as eager's is, where capture would make it build one); cuDNN benchmark mode on; windows of "
        "back-to-back runs timed by CUDA events, median. "
        f"Ratio: Batchwise / the best PyTorch variant; the issue's target is >= {target:g}x at every batch.",
        "",
        "| model | family | batch | unit | Batchwise fp16 | PyTorch eager | PyTorch graph | best PyTorch | ratio | "
        f">= {target:g}x |",
        "|---|---|---:|---|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        label = f"{r['model']} b={r['batch']}"
        eager = {v: x for v, x in r["pytorch"].items() if not v.endswith("-graph")}
        graph = {v: x for v, x in r["pytorch"].items() if v.endswith("-graph")}

        def cells(group):
            run_error = r.get("pytorch_run_error")
            if not group:
                return torch_cell(run_error, f"PyTorch {r['model']}") if run_error else "–"
            return "; ".join(torch_cell(x, f"PyTorch {r['model']}" if x == run_error else f"PyTorch {v}, {label}")
                             + (" (unmasked)" if v.endswith("-unmasked-graph") and len(group) > 1 else "")
                             for v, x in group.items())
        best = r["best_pytorch"]
        lines.append("| " + " | ".join([
            r["model"], r["family"], str(r["batch"]), r["unit"],
            bw_cell(r["batchwise"], ("Export " if r["batchwise"]["status"].startswith("export") else "Batchwise ") + r["model"]),
            cells(eager), cells(graph),
            (f"{compare.fmt_rate(best['per_s'])} ({best['variant']}"
             + (f"; windows spread {best['spread']:.0%}" if best.get("spread", 0) > UNSTEADY_PEER else "") + ")") if best else "–",
            f"{r['ratio']:.2f}x" if r["ratio"] is not None else "–",
            r["verdict"],
        ]) + " |")
    met = sum(1 for r in rows if r["met"] is True)
    judged = sum(1 for r in rows if r["met"] is not None)
    by_model = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r["met"])
    models_met = sum(1 for v in by_model.values() if all(m is True for m in v))
    lines += ["", f"**At >= {target:g}x PyTorch's best: {met} of {judged} rows" + (
        f" ({len(rows) - judged} not judged)" if judged < len(rows) else "") + f"; {models_met} of {len(by_model)} models at every batch.**"]
    below = sorted((r for r in rows if r["met"] is False and r["ratio"] is not None), key=lambda r: r["ratio"])
    if below:
        lines.append("Below, worst first: " + "; ".join(f"{r['model']} b={r['batch']} {r['ratio']:.2f}x" for r in below) + ".")
    unsteady = [r for r in rows if r["best_pytorch"] and r["best_pytorch"].get("spread", 0) > UNSTEADY_PEER]
    if unsteady:
        lines.append(f"PyTorch's windows spread more than {UNSTEADY_PEER:.0%} (max - min over the median) at: "
                     + "; ".join(f"{r['model']} b={r['batch']} {r['best_pytorch']['spread']:.0%}" for r in unsteady)
                     + ": the peer moved within the run, so those ratios are less certain than the others (a pass there is not judged).")
    held = [r for r in rows if r["batchwise"].get("clock_limits")]
    if held:
        lines.append("Batchwise's clock was held below its maximum at: "
                     + "; ".join(f"{r['model']} b={r['batch']} {r['batchwise']['clock_mhz']:,.0f} MHz ({', '.join(r['batchwise']['clock_limits'])})"
                                 for r in held)
                     + ": its rate there is the card's at that clock, which varies with how hot and loaded it ran.")
    slow = [r for r in rows if r["best_pytorch"] and r["best_pytorch"].get("reference")]
    if slow:
        ref = context.get("reference", {})
        lines.append(f"PyTorch ran below {SLOW_PEER:.0%} of its rate in the reference run ({ref.get('date', '?')}, "
                     f"{ref.get('device', '?')}) at: "
                     + "; ".join(f"{r['model']} b={r['batch']} {r['best_pytorch']['per_s'] / r['best_pytorch']['reference']:.0%} "
                                 f"({compare.fmt_rate(r['best_pytorch']['per_s'])} against {compare.fmt_rate(r['best_pytorch']['reference'])}; "
                                 f"{r['batchwise']['images_per_s'] / r['best_pytorch']['reference']:.2f}x against the reference's)"
                                 for r in slow if "images_per_s" in r["batchwise"])
                     + ": the peer did not run at its speed, so those rows are not judged.")
    failed = sorted({r["model"] for r in rows if "images_per_s" not in r["batchwise"]})
    if failed:
        lines.append("Batchwise has no number for: " + ", ".join(failed) + " (footnotes say why).")
    for name, model_notes in (notes_by_model or {}).items():
        for note in model_notes:
            lines.append(f"- PyTorch {name}: {note}")
    lines += footnote.lines()
    if profiles:
        ratios = {}
        for r in rows:
            if r["ratio"] is not None and (r["model"] not in ratios or r["ratio"] < ratios[r["model"]][0]):
                ratios[r["model"]] = (r["ratio"], r["batch"])
        lines += ["", f"## Per-layer profiles of the lowest ratios (Batchwise fp16, b={PROFILE_BATCH}, top {PROFILE_TOP} layers by time)"]
        for m in models:
            p = profiles.get(m.name)
            if p is None:
                continue
            lowest = ratios.get(m.name)
            head = f"### {m.name}" + (f" (lowest ratio {lowest[0]:.2f}x at b={lowest[1]})" if lowest else "")
            lines += ["", head, ""]
            if "error" in p:
                lines.append(f"profile failed: {p['error']}")
                continue
            lines.append(f"{p['layers_total']} layers, {p['total_ms']:.3f} ms in all (layer by layer, CUDA events); the top "
                         f"{len(p['top'])} take {p['top_share']:.1%}.")
            lines += ["", "| # | layer | ms | share |", "|---:|---|---:|---:|"]
            lines += [f"| {i + 1} | `{layer['layer']}` | {layer['ms']:.4f} | {layer['share']:.1%} |" for i, layer in enumerate(p["top"])]
    for extra in context.get("notes", []):
        lines += ["", extra]
    return "\n".join(lines) + "\n"


def write_table(out_dir, models=None):
    """Renders OUT/world.md and world.json from OUT's raw files; returns the markdown."""
    if models is None:
        names = []
        if os.path.exists(os.path.join(out_dir, "context.json")):
            with open(os.path.join(out_dir, "context.json"), encoding="utf-8") as f:
                names = json.load(f).get("models", [])
        models = [BY_NAME[n] for n in names if n in BY_NAME] or MODELS
    exports, batchwise, torch, profiles, context, windows = collect(out_dir, models)
    batches = tuple(context.get("batches") or BATCHES)
    rows = build_rows(models, exports, batchwise, torch, batches, windows=windows, reference=context.get("reference"))
    notes_by_model = {m.name: n for m in models if (n := torch_notes(out_dir, m))}
    markdown = render_markdown(rows, context, profiles, models, notes_by_model)
    with open(os.path.join(out_dir, "world.md"), "w", encoding="utf-8") as f:
        f.write(markdown)
    with open(os.path.join(out_dir, "world.json"), "w", encoding="utf-8") as f:
        json.dump({"schema": "batchwise.world", "schema_version": 1, "target_ratio": TARGET, "context": context,
                   "rows": rows, "profiles": profiles, "pytorch_notes": notes_by_model,
                   "exports": {n: {k: v for k, v in (e or {}).items() if k not in ("trace",)} for n, e in exports.items()}},
                  f, indent=1)
        f.write("\n")
    return markdown


# ---------------------------------------------------------------------------------------------------------------
# The driver (GPU machine)


class Runner(compare.Runner):
    """compare.Runner whose jobs run in their own process group, killed whole at their limit: the export job's pool
    workers must not go on using the CPU while the GPU is timed."""

    def run(self, argv, log_path, limit_s, stdout_path=None):
        limit = min(limit_s, self.left())
        with open(log_path, "w", encoding="utf-8") as log:
            log.write("# " + " ".join(shlex.quote(a) for a in argv) + "\n")
            log.flush()
            if limit < 5:
                log.write("error: skipped: the world table's time budget was spent\n# exit skipped\n")
                return "skipped"
            started = time.monotonic()
            try:
                proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
            except OSError as e:
                log.write(f"\nerror: {e}\n# exit oserror after 0.0 s\n")
                return "oserror"
            try:
                code = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                kill_group(proc)
                log.write(f"\nerror: timed out after {limit:.0f} s\n")
                code = "timeout"
            except BaseException:  # the driver itself is ending (SIGTERM from run.sh's timeout, Ctrl+C): the job too
                kill_group(proc)
                raise
            log.write(f"\n# exit {code} after {time.monotonic() - started:.1f} s\n")
        return code


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def skip(log_path, argv, why):
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("# " + " ".join(argv) + f"\nerror: skipped: {why}\n# exit skipped\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", default=os.environ.get("CLI", "/tmp/batchwise-device/cli/Batchwise.Cli"), help="the published batchwise CLI ($CLI)")
    p.add_argument("--python", default=sys.executable, help="python with torch, timm, transformers and onnx (exports and PyTorch timings)")
    p.add_argument("--out", default=os.path.join(os.environ.get("OUT", os.path.join(os.getcwd(), "device-out")), "world"),
                   help="where the table and raw files go (default $OUT/world)")
    p.add_argument("--work", default="/tmp/batchwise-exports", help="exports, cached between phases of one device call")
    p.add_argument("--models", default="", help=f"comma-separated subset of {', '.join(BY_NAME)}")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)), help="batch sizes (the issue's: 1,64)")
    p.add_argument("--duration", default="1s", help="batchwise bench --duration (three windows)")
    p.add_argument("--warmup", default="0.5s", help="batchwise bench --warmup")
    p.add_argument("--max-windows", default="3", help="batchwise bench --max-windows")
    # Since session 50: PyTorch's windows are back-to-back replays with no wait between runs, so Batchwise's runs are
    # enqueued so too (before, each was waited for: a host round trip a run the peer did not pay).
    p.add_argument("--queue", type=int, default=20, help="batchwise bench --queue: runs enqueued back to back before waiting (1: each waited for)")
    # Five windows after 0.5 s of warm-up (three after 0.3 s until session 44; about 60 s more for the table): the eager
    # transformer peers are bound by the host's Python at b=1 and at times at b=64, and their windows spread (BERT b=64
    # 30,293 / 43,134 / 42,841 in session 44's table); more windows give the median more to stand on.
    p.add_argument("--torch-windows", type=int, default=5, help="PyTorch's timed windows a point (their median is its rate)")
    p.add_argument("--torch-window-seconds", type=float, default=0.3)
    p.add_argument("--torch-warmup-seconds", type=float, default=0.5)
    p.add_argument("--jobs", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)), help="parallel exports")
    p.add_argument("--export-limit", type=float, default=180, help="seconds for all the exports (of --budget)")
    p.add_argument("--bench-limit", type=float, default=100, help="seconds for one model's batchwise bench")
    p.add_argument("--torch-limit", type=float, default=100, help="seconds for one model's PyTorch timings")
    p.add_argument("--profile-worst", type=int, default=0, metavar="N",
                   help=f"profile the N models with the lowest ratios at b={PROFILE_BATCH} (bench --profile); their top {PROFILE_TOP} layers go in the table")
    p.add_argument("--profile-limit", type=float, default=60, help="seconds for one profile")
    p.add_argument("--budget", type=float, default=450,
                   help="seconds for the whole phase; jobs past it are recorded as skipped (the profiles get their share first)")
    p.add_argument("--reference", metavar="WORLD_JSON",
                   help=f"an earlier world.json (or .json.xz) on the same card: rows whose PyTorch ran below {SLOW_PEER:.0%} of its rate there are not judged")
    p.add_argument("--table-only", metavar="DIR", help="only re-render DIR/world.md and world.json from the raw files in DIR")
    p.add_argument("--export-only", action="store_true",
                   help="only export into --work (the CPU part: a device call of its own, so the next call's budget is all timing)")
    p.add_argument("--export", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--torch-serve", action="store_true", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    if "--export" in argv:
        return export_worker(argv)
    if "--torch-serve" in argv:
        return serve_torch()
    args = p.parse_args(argv)
    if args.table_only:
        if args.reference:  # judged again against a reference run: kept in the folder's context for later renders
            path = os.path.join(args.table_only, "context.json")
            with open(path, encoding="utf-8") as f:
                context = json.load(f)
            try:
                context["reference"] = reference_rates(args.reference)
            except (ValueError, OSError) as e:
                p.error(str(e))
            with open(path, "w", encoding="utf-8") as f:
                json.dump(context, f, indent=1)
        sys.stdout.write(write_table(args.table_only))
        return 0
    try:
        models = pick(args.models)
        reference = reference_rates(args.reference) if args.reference else None
        batches = [int(b) for b in args.batches.split(",") if b]
        if not batches or min(batches) < 1:
            raise ValueError(f"bad batch sizes '{args.batches}'")
    except (ValueError, OSError) as e:
        p.error(str(e))

    os.makedirs(args.out, exist_ok=True)
    # run.sh's timeout ends the driver with SIGTERM: end as on Ctrl+C, so the running job and the PyTorch worker go too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    runner = Runner(args.out, args.budget)
    # what the profiles keep of the budget (they take ~20 s each); nothing when only exporting
    reserve = 0 if args.export_only else args.profile_worst * (args.profile_limit / 2)
    started = datetime.datetime.now(datetime.timezone.utc)
    context = compare.gpu_context(None)
    context.update(
        date=started.isoformat(timespec="seconds"), host=os.uname().nodename, models=[m.name for m in models], batches=batches,
        queue=args.queue,
        method=f"batchwise --duration {args.duration} --warmup {args.warmup} --max-windows {args.max_windows} --queue {args.queue}; torch "
               f"{args.torch_windows} windows of {args.torch_window_seconds} s after {args.torch_warmup_seconds} s warm-up")
    settings = engine_settings(os.environ)
    if settings:
        context["batchwise_environment"] = settings
    if reference is not None:
        if reference.get("device") and context.get("device") and reference["device"] != context["device"]:
            print(f"note: the reference ran on {reference['device']}, this run on {context['device']}: not used", flush=True)
        else:
            context["reference"] = reference

    def save_context():
        with open(os.path.join(args.out, "context.json"), "w", encoding="utf-8") as f:
            json.dump(context, f, indent=1)

    save_context()
    print(f"world: {context.get('device')} ({context.get('driver', '?')}); {len(models)} models; cli {args.cli}; "
          f"out {args.out}; work {args.work}; budget {args.budget:.0f} s", flush=True)

    # A table of this run only: no raw file of an earlier run into the same folder may stand in for a job not run now.
    stale = ["export-{}.json"] + ([] if args.export_only else [
        "bw-{}.json", "bw-{}.log", "torch-{}.jsonl", "torch-{}.log", "profile-{}.json", "profile-{}.layers.csv", "profile-{}.log"])
    for m in models:
        for pattern in stale:
            if os.path.exists(os.path.join(args.out, pattern.format(m.name))):
                os.remove(os.path.join(args.out, pattern.format(m.name)))
    # Exports first, on the CPU (no GPU job runs meanwhile); each model's export-NAME.json is written as it finishes.
    code = runner.run([args.python, os.path.abspath(__file__), "--export", "--work", args.work, "--out", args.out,
                       "--models", ",".join(m.name for m in models), "--jobs", str(args.jobs)],
                      os.path.join(args.out, "exports.log"), min(args.export_limit, max(0.0, runner.left() - reserve)))
    with open(os.path.join(args.out, "exports.log"), encoding="utf-8", errors="replace") as f:
        export_log = f.read()
    for m in models:  # a model the export run never reached (time limit, crash) is a row saying so
        if read_export(args.out, m) is None:
            with open(os.path.join(args.out, f"export-{m.name}.json"), "w", encoding="utf-8") as f:
                json.dump({"name": m.name, "family": m.kind, "export": "skipped",
                           "error": f"not exported in time (export run: exit {code}; {compare.last_line(export_log)})"[:300]}, f)
    print(f"exports: exit {code}", flush=True)
    if args.export_only:
        for m in models:
            info = read_export(args.out, m)
            print(f"{m.name}: {info.get('export')}{' (cached)' if info.get('cached') else ''} {info.get('error', '')}".rstrip())
        return 0

    worker = TorchWorker(args.python, os.path.join(args.out, "torch-worker.log"))
    try:
        for m in models:
            info = read_export(args.out, m)
            stem = os.path.join(args.out, f"bw-{m.name}")
            if info.get("export") != "ok":
                print(f"{m.name}: export failed: {info.get('error')}", flush=True)
                continue
            argv_bw = [args.cli, "bench", info["path"], "--engine", "cuda", "--precision", "fp16",
                       "-b", ",".join(map(str, batches)), "--duration", args.duration, "--warmup", args.warmup,
                       "--max-windows", args.max_windows, "--queue", str(args.queue), "--json", stem + ".json"] + info.get("shape_args", [])
            left = runner.left() - reserve
            if left < 10:
                skip(stem + ".log", argv_bw, "the world table's time budget was spent")
                code = "skipped"
            else:
                code = runner.run(argv_bw, stem + ".log", min(args.bench_limit, left))
            print(f"batchwise {m.name}: exit {code}", flush=True)

            tstem = os.path.join(args.out, f"torch-{m.name}")
            request = {"name": m.name, "batches": batches, "out": tstem + ".jsonl", "windows": args.torch_windows,
                       "window_seconds": args.torch_window_seconds, "warmup_seconds": args.torch_warmup_seconds}
            t0 = time.monotonic()
            left = runner.left() - reserve
            tcode = worker.measure(request, min(args.torch_limit, left)) if left >= 10 else "skipped"
            with open(tstem + ".log", "w", encoding="utf-8") as log:
                log.write(f"# torch worker: {json.dumps(request)}\n")
                if tcode == "skipped":
                    log.write("error: skipped: the world table's time budget was spent\n")
                elif tcode == "timeout":
                    log.write(f"error: timed out after {min(args.torch_limit, left):.0f} s\n")
                elif tcode != 0:
                    log.write(f"error: the PyTorch worker ended ({tcode}): {worker_last_line(args.out)}\n")
                log.write(f"# exit {tcode if tcode in (0, 'skipped', 'timeout') else 'failed'} after {time.monotonic() - t0:.1f} s\n")
            print(f"torch {m.name}: {tcode}", flush=True)
    finally:
        worker.close()

    if args.profile_worst > 0:
        exports, batchwise, torch, _, _, windows = collect(args.out, models)
        for name in worst(build_rows(models, exports, batchwise, torch, batches, windows=windows, reference=context.get("reference")), args.profile_worst):
            m, info = BY_NAME[name], read_export(args.out, BY_NAME[name])
            stem = os.path.join(args.out, f"profile-{name}")
            code = runner.run([args.cli, "bench", info["path"], "--engine", "cuda", "--precision", "fp16",
                               "-b", str(PROFILE_BATCH), "--profile", "--duration", "0.5s", "--warmup", "0.2s",
                               "--max-windows", "3", "--json", stem + ".json"] + info.get("shape_args", []),
                              stem + ".log", args.profile_limit)
            print(f"profile {name}: exit {code}", flush=True)

    context["total_seconds"] = round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1)
    save_context()
    markdown = write_table(args.out, models)
    print(markdown)
    print(f"wrote {os.path.join(args.out, 'world.md')} and world.json ({context['total_seconds']} s)")
    return 0


def worker_last_line(out_dir):
    path = os.path.join(out_dir, "torch-worker.log")
    if not os.path.exists(path):
        return "no worker log"
    with open(path, encoding="utf-8", errors="replace") as f:
        return compare.last_line(f.read())[:300]


if __name__ == "__main__":
    sys.exit(main())
