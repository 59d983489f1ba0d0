#!/usr/bin/env python3
"""Batchwise vs PyTorch on one GPU, in one run: the peer comparison of issue #4, with its targets.

For each case (model, input size, batch sizes) it runs, one GPU job at a time:
  batchwise bench zoo:MODEL --engine cuda --precision fp32 and fp16   (the published CLI at --cli / $CLI)
  torch_bench.py --case MODEL@SIZE:BATCHES                           (fp32 eager, fp16 channels-last eager, fp16 + CUDA graph)
then writes ONE table: images/s of each, the best PyTorch variant, Batchwise fp16 / best PyTorch, the issue's target and
whether it is met. A Batchwise run that the CLI refuses (e.g. `--precision fp16` before the engine has it) is recorded as
"refused: <its one-line error>" and the rest goes on.

    python3 bench/peers/compare.py                       # on the GPU machine; writes $OUT/peers/peers.md and peers.json
    python3 bench/peers/compare.py --table-only DIR      # re-render DIR's table from the raw files there (any machine)

Also checks first that torch's YOLOv8n (yolov8n.py) is the zoo's: same parameter count as `batchwise zoo export`, every
learned tensor by name and shape, and the same function (`batchwise conformance --engine ort` runs the zoo graph against
the torch module holding the zoo's weights); a mismatch marks the yolov8n rows and makes the exit code 1.
Raw files: DIR/batchwise-CASE-PRECISION.{json,log}, DIR/torch-CASE.{jsonl,log}, DIR/context.json, DIR/yolov8n-check.txt.
"""
import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TORCH_VARIANTS = ("fp32", "fp16-cl", "fp16-graph")
PRECISIONS = ("fp32", "fp16")


class Case:
    """One model at one input size, its batch sizes and the issue's target for them."""

    def __init__(self, model, size, zoo, torch_name, batches, ratio, absolute=None):
        self.model, self.size, self.zoo, self.torch_name = model, size, zoo, torch_name
        self.batches, self.ratio, self.absolute = list(batches), ratio, dict(absolute or {})

    @property
    def id(self):
        return f"{self.model}-{self.size}"

    @property
    def input(self):
        h, _, w = self.size.partition("x")
        return f"{h}x{w or h}"

    def target_text(self, batch):
        parts = [f">= {self.ratio:g}x"]
        if batch in self.absolute:
            parts.append(f">= {self.absolute[batch]:,} img/s")
        return ", ".join(parts)


# Issue #4's targets. Sizes are HEIGHTxWIDTH, as the zoo's size option and torch_bench.py take them.
CASES = [
    Case("resnet50", "224", "zoo:resnet50", "resnet50", [1, 8, 64, 256], 1.5, {1: 2000, 256: 25000}),
    Case("mobilenetv2", "224", "zoo:mobilenetv2", "mobilenet_v2", [1, 8, 64], 1.3),
    Case("yolov8n", "640", "zoo:yolov8n?size=640", "yolov8n", [1, 8, 64], 1.3),
    Case("resnet50", "1600x1008", "zoo:resnet50?size=1600x1008", "resnet50", [1, 8], 1.5),
]


# ---------------------------------------------------------------------------------------------------------------
# Reading the raw results


def read_batchwise(json_path, log_path):
    """{batch: {"images_per_s", "stable", "spread"}} plus "status" (ok | refused: msg | failed: msg) and notes."""
    result = {"points": {}, "status": "not run", "notes": []}
    if os.path.exists(log_path):
        with open(log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        exit_code = re.findall(r"^# exit (\S+)", log, re.M)
        errors = [line[len("error:"):].strip() for line in log.splitlines() if line.startswith("error:")]
        code = exit_code[-1] if exit_code else None
        if code == "0":
            result["status"] = "ok"
        elif code == "2" and errors:  # a BatchwiseException: the CLI's own refusal, one line
            result["status"] = "refused: " + errors[-1]
        elif code == "skipped":
            result["status"] = "skipped: the comparison's time budget was spent"
        elif code == "timeout":
            result["status"] = "failed: " + (errors[-1] if errors else "timed out")
        elif code is not None:
            result["status"] = f"failed (exit {code}): " + (errors[-1] if errors else last_line(log))
    if os.path.exists(json_path):
        try:
            with open(json_path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            result["notes"].append(f"unreadable {os.path.basename(json_path)}: {e}")
            return result
        for p in doc.get("points", []):
            if p.get("concurrency", 1) == 1:
                result["points"][p["batch_size"]] = {
                    "images_per_s": p["throughput_samples_per_s"],
                    "stable": p.get("stable", True),
                    "spread": p.get("spread"),
                }
                clocks = p.get("device_clocks") or {}
                if clocks.get("sm_clock_mhz"):
                    # The SM clock over the measurement and what held it below its maximum (power cap, thermal, ...).
                    result["points"][p["batch_size"]]["clock_mhz"] = clocks["sm_clock_mhz"]
                    result["points"][p["batch_size"]]["clock_limits"] = sorted(clocks.get("limits") or {})
        result["notes"] += doc.get("notes", [])
        result["engine"] = doc.get("engine", {})
        result["batchwise_version"] = doc.get("batchwise_version")
        if doc.get("stop_reason") not in (None, "completed"):
            result["notes"].append(f"stop_reason {doc['stop_reason']}")
    return result


def last_line(text):
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return lines[-1].strip() if lines else "no output"


def read_torch(jsonl_path, log_path=None):
    """{(batch, variant): images_per_s or "error: ..."} and the context of the first line; when the run gave no line
    or ended badly, also {"all": "error: <why>"} from its log, for the points it never reached."""
    points, context = {}, {}
    lines = []
    if os.path.exists(jsonl_path):
        with open(jsonl_path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue
        context = context or {k: d.get(k) for k in ("device", "torch", "torchvision", "cuda", "cudnn", "tf32", "cudnn_benchmark")}
        points[(d["batch"], d["variant"])] = d["images_per_s"] if "images_per_s" in d else "error: " + d.get("error", "?")
    if log_path and os.path.exists(log_path):
        with open(log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        exits = re.findall(r"^# exit (\S+)", log, re.M)
        if not points or (exits and exits[-1] != "0"):  # points it never reached say why the run ended
            errors = [line[len("error:"):].strip() for line in log.splitlines() if line.startswith("error:")]
            points["all"] = "error: " + (errors[-1] if errors else last_line(log))
    return points, context


# ---------------------------------------------------------------------------------------------------------------
# The table


def build_rows(cases, batchwise, torch, mismatched=()):
    """Rows of the comparison. batchwise: {(case id, precision): read_batchwise(...)}; torch: {case id: read_torch(...)[0]}."""
    rows = []
    for case in cases:
        for batch in case.batches:
            row = {"model": case.model, "input": case.input, "batch": batch, "batchwise": {}, "pytorch": {}}
            for precision in PRECISIONS:
                row["batchwise"][precision] = batchwise_point(batchwise.get((case.id, precision)), batch)
            tp = torch.get(case.id, {})
            for v in TORCH_VARIANTS:
                value = tp.get((batch, v), tp.get("all"))
                row["pytorch"][v] = value if value is not None else "not run"
            if "all" in tp:
                row["pytorch_run_error"] = tp["all"]
            measured = {v: x for v, x in row["pytorch"].items() if isinstance(x, (int, float))}
            best = max(measured, key=measured.get) if measured else None
            row["best_pytorch"] = {"variant": best, "images_per_s": measured[best]} if best else None
            fp16, fp32 = (row["batchwise"][p].get("images_per_s") for p in ("fp16", "fp32"))
            row["ratio_fp16_vs_best"] = round(fp16 / measured[best], 3) if fp16 and best else None
            row["ratio_fp32_vs_fp32"] = round(fp32 / measured["fp32"], 3) if fp32 and "fp32" in measured else None
            row["target"] = {"ratio": case.ratio, "min_images_per_s": case.absolute.get(batch)}
            row["target_text"] = case.target_text(batch)
            row["met"], row["verdict"] = verdict(row, case, batch, mismatched)
            rows.append(row)
    return rows


def batchwise_point(r, batch):
    """One batch size's cell from read_batchwise's result r (None: not run): its numbers, or a status saying why not."""
    if r is None:
        return {"status": "not run"}
    if batch in r["points"]:
        return dict(r["points"][batch], status="ok")
    if not r["points"]:  # the whole run failed or was refused: its status says why
        return {"status": "failed: no points" if r["status"] == "ok" else r["status"]}
    # other batch sizes ran: the sweep stopped early (a batch failed, time budget, timeout)
    why = [r["status"]] if r["status"] != "ok" else r["notes"][-1:]
    return {"status": "not measured" + (f": {why[0]}" if why else "")}


def verdict(row, case, batch, mismatched):
    if case.model in mismatched:
        return None, "n/a: torch model is not the zoo's"
    if row["best_pytorch"] is None:
        return None, "n/a: no PyTorch number"
    fp16 = row["batchwise"]["fp16"]
    if "images_per_s" not in fp16:
        return False, "no: Batchwise fp16 " + fp16["status"].split(":")[0]
    ratio = row["ratio_fp16_vs_best"]
    misses = []
    if ratio < case.ratio:
        misses.append(f"{ratio:.2f}x < {case.ratio:g}x")
    floor = case.absolute.get(batch)
    if floor and fp16["images_per_s"] < floor:
        misses.append(f"{fp16['images_per_s']:,.0f} < {floor:,} img/s")
    return (False, "no: " + "; ".join(misses)) if misses else (True, "yes")


def fmt_rate(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


class Footnotes:
    """One footnote per distinct message, numbered in order of first use, each naming the runs it came from."""

    def __init__(self):
        self.notes = {}  # message -> the runs it came from, in order of first use

    def mark(self, message, label):
        labels = self.notes.setdefault(message, [])
        if label not in labels:
            labels.append(label)
        return f"[{list(self.notes).index(message) + 1}]"

    def lines(self):
        """The footnotes' lines after a blank one, or none."""
        if not self.notes:
            return []
        return [""] + [f"[{i + 1}] {'; '.join(labels)}: {message}" for i, (message, labels) in enumerate(self.notes.items())]


def render_markdown(rows, context, cases=CASES):
    """The table as markdown: header naming the device and versions, one line per (model, input, batch), footnotes."""
    footnote = Footnotes()

    def bw_cell(cell, label):
        if "images_per_s" in cell:
            return fmt_rate(cell["images_per_s"]) + ("" if cell.get("stable", True) else " (unstable)")
        status = cell["status"]
        if status in ("not run", "not measured"):
            return status
        return status.split(":")[0] + " " + footnote.mark(status, f"Batchwise {label}")

    def torch_cell(x, label):
        if isinstance(x, (int, float)):
            return fmt_rate(x)
        return x if x == "not run" else "error " + footnote.mark(x, f"PyTorch {label}")

    lines = [f"# Batchwise vs PyTorch: {context.get('device', 'unknown device')}", ""]
    lines += [f"- {line}" for line in header_lines(context)]
    lines += [
        "",
        "Images/s (one image = one item of the batch; random weights; inputs already on the GPU; concurrency 1). "
        "Batchwise: `batchwise bench --engine cuda` (fp32 is true fp32, TF32 off; each batch is waited for, so host "
        "overhead between batches counts against it). PyTorch: eager fp32 (TF32 off), fp16 channels-last eager, fp16 "
        "channels-last replayed from a CUDA graph; cuDNN benchmark mode on; windows of back-to-back launches timed by CUDA "
        "events. Ratio: Batchwise fp16 / best PyTorch variant.",
        "",
        "| model | input (HxW) | batch | Batchwise fp32 | Batchwise fp16 | PyTorch fp32 | PyTorch fp16-cl | PyTorch fp16-graph "
        "| best PyTorch | Batchwise fp16 / best | Batchwise fp32 / PyTorch fp32 | target | met |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|",
    ]
    for r in rows:
        label = f"{r['model']} {r['input']}"
        best = r["best_pytorch"]
        lines.append("| " + " | ".join([
            r["model"], r["input"], str(r["batch"]),
            bw_cell(r["batchwise"]["fp32"], f"fp32, {label}"),
            bw_cell(r["batchwise"]["fp16"], f"fp16, {label}"),
            *(torch_cell(r["pytorch"][v], label if r["pytorch"][v] == r.get("pytorch_run_error") else f"{v}, {label} b={r['batch']}")
              for v in TORCH_VARIANTS),
            f"{fmt_rate(best['images_per_s'])} ({best['variant']})" if best else "–",
            f"{r['ratio_fp16_vs_best']:.2f}x" if r["ratio_fp16_vs_best"] is not None else "–",
            f"{r['ratio_fp32_vs_fp32']:.2f}x" if r["ratio_fp32_vs_fp32"] is not None else "–",
            r["target_text"],
            r["verdict"],
        ]) + " |")
    lines += ["", "By target (issue #4):"]
    for case in cases:
        mine = [r for r in rows if r["model"] == case.model and r["input"] == case.input]
        if not mine:
            continue
        floors = "".join(f", b={b} >= {v:,} img/s" for b, v in case.absolute.items())
        ok = [r["met"] for r in mine]
        state = "met" if all(m is True for m in ok) else "not judged" if all(m is None for m in ok) else "NOT met"
        lines.append(f"- {case.model} {case.input}: fp16 >= {case.ratio:g}x the best PyTorch variant at "
                     f"b={','.join(map(str, case.batches))}{floors}: {state} ({sum(m is True for m in ok)} of {len(ok)} rows)")
    met = sum(1 for r in rows if r["met"] is True)
    judged = sum(1 for r in rows if r["met"] is not None)
    lines += ["", f"**Targets met: {met} of {judged} rows**" + (f" ({len(rows) - judged} not judged)" if judged < len(rows) else "") + "."]
    misses = [r for r in rows if r["met"] is False]
    if misses:
        lines.append("Missed: " + "; ".join(f"{r['model']} {r['input']} b={r['batch']} ({r['verdict'][4:]})" for r in misses) + ".")
    lines += footnote.lines()
    for extra in context.get("notes", []):
        lines += ["", extra]
    return "\n".join(lines) + "\n"


def build_and_run_lines(c):
    """The Batchwise build and engine libraries, and when and how the run was made, as header lines (shared with world.py)."""
    out = []
    if c.get("batchwise_version"):
        engine = c.get("engine") or {}
        details = engine.get("details") or {}
        libs = ", ".join(f"{k} {details[k]}" for k in ("driver", "cudnn", "cublaslt", "nvrtc", "compute_capability") if details.get(k))
        out.append(f"Batchwise {c['batchwise_version']}, engine {engine.get('name', '?')} {engine.get('version', '')}".rstrip()
                   + (f" ({libs})" if libs else ""))
    if c.get("date"):
        out.append(f"Run {c['date']} on {c.get('host', '?')}; {c.get('method', '')}".rstrip("; "))
    return out


def header_lines(c):
    gpu = c.get("device", "?")
    if c.get("driver"):
        gpu += f", driver {c['driver']}"
    if c.get("memory"):
        gpu += f", {c['memory']}"
    out = [f"GPU: {gpu}"]
    if c.get("torch"):
        out.append(f"PyTorch {c['torch']} (torchvision {c.get('torchvision', '?')}), CUDA {c.get('cuda', '?')}, "
                   f"cuDNN {cudnn_text(c.get('cudnn'))}")
    out += build_and_run_lines(c)
    if c.get("yolov8n_check"):
        out.append("YOLOv8n check: " + c["yolov8n_check"])
    return out


def cudnn_text(v):
    if isinstance(v, int) and v >= 90000:
        return f"{v // 10000}.{v // 100 % 100}.{v % 100}"
    if isinstance(v, int) and v > 0:
        return f"{v // 1000}.{v // 100 % 10}.{v % 100}"
    return str(v) if v else "?"


def collect(out_dir, cases=CASES):
    """Reads DIR's raw files: the Batchwise and torch results and the context."""
    batchwise = {}
    torch = {}
    context = {}
    if os.path.exists(os.path.join(out_dir, "context.json")):
        with open(os.path.join(out_dir, "context.json"), encoding="utf-8") as f:
            context = json.load(f)
    for case in cases:
        for p in PRECISIONS:
            stem = os.path.join(out_dir, f"batchwise-{case.id}-{p}")
            if os.path.exists(stem + ".log") or os.path.exists(stem + ".json"):
                r = read_batchwise(stem + ".json", stem + ".log")
                batchwise[(case.id, p)] = r
                if r.get("batchwise_version") and "batchwise_version" not in context:
                    context["batchwise_version"], context["engine"] = r["batchwise_version"], r.get("engine")
        points, tc = read_torch(os.path.join(out_dir, f"torch-{case.id}.jsonl"), os.path.join(out_dir, f"torch-{case.id}.log"))
        torch[case.id] = points
        for k, v in tc.items():
            context.setdefault(k, v)
    return batchwise, torch, context


def write_table(out_dir, cases=CASES):
    """Renders DIR/peers.md and DIR/peers.json from DIR's raw files; returns the markdown."""
    batchwise, torch, context = collect(out_dir, cases)
    mismatched = context.get("mismatched", [])
    rows = build_rows(cases, batchwise, torch, mismatched)
    markdown = render_markdown(rows, context, cases)
    with open(os.path.join(out_dir, "peers.md"), "w", encoding="utf-8") as f:
        f.write(markdown)
    with open(os.path.join(out_dir, "peers.json"), "w", encoding="utf-8") as f:
        json.dump({"schema": "batchwise.peers", "schema_version": 1, "context": context, "rows": rows}, f, indent=1)
        f.write("\n")
    return markdown


# ---------------------------------------------------------------------------------------------------------------
# Running (GPU machine)


class Runner:
    """Runs one GPU job at a time within a total time budget, logging each command and its exit."""

    def __init__(self, out_dir, budget_s):
        self.out_dir = out_dir
        self.deadline = time.monotonic() + budget_s

    def left(self):
        return self.deadline - time.monotonic()

    def run(self, argv, log_path, limit_s, stdout_path=None):
        limit = min(limit_s, self.left())
        with open(log_path, "w", encoding="utf-8") as log:
            log.write("# " + " ".join(shlex.quote(a) for a in argv) + "\n")
            log.flush()
            if limit < 5:
                log.write("error: skipped: the comparison's time budget is spent\n# exit skipped\n")
                return "skipped"
            out = open(stdout_path, "w", encoding="utf-8") if stdout_path else log
            started = time.monotonic()
            try:
                code = subprocess.run(argv, stdout=out, stderr=log, timeout=limit, check=False).returncode
            except subprocess.TimeoutExpired:
                log.write(f"\nerror: timed out after {limit:.0f} s\n")
                code = "timeout"
            except OSError as e:
                log.write(f"\nerror: {e}\n")
                code = "oserror"
            finally:
                if stdout_path:
                    out.close()
            log.write(f"\n# exit {code} after {time.monotonic() - started:.1f} s\n")
        return code


def gpu_context(python):
    """The GPU (nvidia-smi) and, when python is given, its torch, torchvision, CUDA and cuDNN versions."""
    c = {}
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=20, check=False).stdout.strip().splitlines()
        if q:
            name, driver, memory = (x.strip() for x in (q[0].split(",") + ["", "", ""])[:3])
            c.update(device=name, driver=driver, memory=memory)
    except (OSError, subprocess.TimeoutExpired):
        c["device"] = "nvidia-smi not found"
    if not python:
        return c
    try:
        v = subprocess.run([python, "-c", "import torch, torchvision; print(torch.__version__, torchvision.__version__, "
                            "torch.version.cuda, torch.backends.cudnn.version())"],
                           capture_output=True, text=True, timeout=60, check=False).stdout.split()
        if len(v) == 4:
            c.update(torch=v[0], torchvision=v[1], cuda=v[2], cudnn=int(v[3]) if v[3].isdigit() else v[3])
    except (OSError, subprocess.TimeoutExpired):
        pass
    return c


def check_yolov8n(runner, cli, python, out_dir):
    """yolov8n.py vs the zoo: parameter count and every tensor's name and shape against `batchwise zoo export`, then the
    same function: the zoo graph on ONNX Runtime (CPU) against the torch module holding the zoo's weights.
    Returns (True when all agree, False on a mismatch, None when the check could not run; and a summary)."""
    onnx_path = os.path.join(out_dir, "yolov8n-640.onnx")
    case_dir = os.path.join(out_dir, "yolov8n-case")
    log = os.path.join(out_dir, "yolov8n-check.txt")
    export_log = os.path.join(out_dir, "yolov8n-export.log")
    runner.run([cli, "zoo", "export", "zoo:yolov8n?size=640", "-o", onnx_path], export_log, 60)
    with open(export_log, encoding="utf-8", errors="replace") as f:
        export_text = f.read()
    m = re.search(r"([\d,]+) parameters", export_text)
    if not m or not os.path.exists(onnx_path):
        return None, "zoo export failed: " + last_line(export_text)
    code = runner.run([python, os.path.join(HERE, "yolov8n.py"), "--size", "640", "--zoo-count", m.group(1).replace(",", ""),
                       "--onnx", onnx_path, "--conformance", case_dir], log, 120)
    conformance_log = os.path.join(out_dir, "yolov8n-conformance.log")
    runner.run([cli, "conformance", case_dir, "--engine", "ort", "--atol", "1e-4", "--rtol", "1e-3"], conformance_log, 120)
    with open(log, encoding="utf-8", errors="replace") as f:
        text = f.read()
    with open(conformance_log, encoding="utf-8", errors="replace") as f:
        total = [line for line in f.read().splitlines() if line.startswith("total:")]
    same_function = bool(total) and "passed 1," in total[-1]
    # 12 MB of random weights and 15 MB of test tensors: not worth bringing back from the GPU machine.
    if os.path.exists(onnx_path):
        os.remove(onnx_path)
    shutil.rmtree(case_dir, ignore_errors=True)
    summary = "; ".join(line.strip() for line in text.splitlines() if line.startswith(("yolov8n@", "  MISMATCH")))
    summary += "; zoo graph on ONNX Runtime vs this module with the zoo's weights (atol 1e-4, rtol 1e-3): " + (
        total[-1] if total else "not run")
    if code == 0 and same_function:
        return True, summary[:900]
    if "MISMATCH" in text or (total and "failed 1," in total[-1]):
        return False, summary[:900]
    return None, (summary + "; " + last_line(text))[:900]  # the check itself broke (e.g. no onnx module): says so, judges nothing


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", default=os.environ.get("CLI", "/tmp/batchwise-device/cli/Batchwise.Cli"), help="the published batchwise CLI ($CLI)")
    p.add_argument("--python", default=sys.executable, help="python with torch and torchvision for torch_bench.py")
    p.add_argument("--out", default=os.path.join(os.environ.get("OUT", os.path.join(os.getcwd(), "device-out")), "peers"),
                   help="where the table and raw files go (default $OUT/peers)")
    p.add_argument("--cases", default="", help=f"comma-separated subset of {', '.join(c.id for c in CASES)}")
    p.add_argument("--engine", default="cuda")
    p.add_argument("--duration", default="1s", help="batchwise bench --duration (three windows)")
    p.add_argument("--warmup", default="0.5s", help="batchwise bench --warmup")
    p.add_argument("--max-windows", default="3", help="batchwise bench --max-windows (3: exactly three windows)")
    p.add_argument("--torch-windows", type=int, default=3)
    p.add_argument("--torch-window-seconds", type=float, default=0.4)
    p.add_argument("--torch-warmup-seconds", type=float, default=0.5)
    p.add_argument("--budget", type=float, default=330, help="seconds for the whole comparison; jobs past it are recorded as skipped")
    p.add_argument("--table-only", metavar="DIR", help="only re-render DIR/peers.md and peers.json from the raw files in DIR")
    args = p.parse_args()

    if args.table_only:
        sys.stdout.write(write_table(args.table_only))
        return 0

    cases = [c for c in CASES if not args.cases or c.id in args.cases.split(",")]
    if not cases:
        p.error(f"--cases '{args.cases}' names none of {', '.join(c.id for c in CASES)}")
    os.makedirs(args.out, exist_ok=True)
    runner = Runner(args.out, args.budget)
    started = datetime.datetime.now(datetime.timezone.utc)
    context = gpu_context(args.python)
    context.update(
        date=started.isoformat(timespec="seconds"), host=os.uname().nodename,
        method=f"batchwise --duration {args.duration} --warmup {args.warmup} --max-windows {args.max_windows}; "
               f"torch {args.torch_windows} windows of {args.torch_window_seconds} s after {args.torch_warmup_seconds} s warm-up",
        mismatched=[])
    print(f"peers: {context.get('device')} ({context.get('driver', '?')}), torch {context.get('torch', 'missing')}; "
          f"cli {args.cli}; out {args.out}", flush=True)

    if any(c.model == "yolov8n" for c in cases):
        ok, summary = check_yolov8n(runner, args.cli, args.python, args.out)
        context["yolov8n_check"] = ("ok: " if ok else "MISMATCH: " if ok is False else "not checked: ") + summary
        if ok is False:
            context["mismatched"].append("yolov8n")
        print("yolov8n check: " + context["yolov8n_check"], flush=True)
    with open(os.path.join(args.out, "context.json"), "w", encoding="utf-8") as f:
        json.dump(context, f, indent=1)

    for case in cases:
        batches = ",".join(map(str, case.batches))
        for precision in PRECISIONS:
            stem = os.path.join(args.out, f"batchwise-{case.id}-{precision}")
            if os.path.exists(stem + ".json"):
                os.remove(stem + ".json")
            code = runner.run([args.cli, "bench", case.zoo, "--engine", args.engine, "--precision", precision, "-b", batches,
                               "--duration", args.duration, "--warmup", args.warmup, "--max-windows", args.max_windows,
                               "--json", stem + ".json"], stem + ".log", 150)
            print(f"batchwise {case.id} {precision}: exit {code}", flush=True)
        stem = os.path.join(args.out, f"torch-{case.id}")
        code = runner.run([args.python, os.path.join(HERE, "torch_bench.py"), "--case", f"{case.torch_name}@{case.size}:{batches}",
                           "--windows", str(args.torch_windows), "--window-seconds", str(args.torch_window_seconds),
                           "--warmup-seconds", str(args.torch_warmup_seconds)], stem + ".log", 200, stdout_path=stem + ".jsonl")
        print(f"torch {case.id}: exit {code}", flush=True)

    context["total_seconds"] = round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1)
    with open(os.path.join(args.out, "context.json"), "w", encoding="utf-8") as f:
        json.dump(context, f, indent=1)
    markdown = write_table(args.out, cases)
    print(markdown)
    print(f"wrote {os.path.join(args.out, 'peers.md')} and peers.json ({context['total_seconds']} s)")
    return 1 if context["mismatched"] else 0


if __name__ == "__main__":
    sys.exit(main())
