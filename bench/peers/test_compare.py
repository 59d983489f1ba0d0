#!/usr/bin/env python3
"""Tests of compare.py's table (fake Batchwise JSON and torch JSON lines) and of its driver (a fake CLI and a fake python
standing in for the GPU machine). No GPU, torch or network needed:

    python3 bench/peers/test_compare.py            # unittest; -v for names
    python3 bench/peers/test_compare.py --show     # print the table rendered from the fake data
"""
import json
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
import torch_bench  # noqa: E402  (importable without torch)

REFUSAL = "--precision fp16 is not supported by the cuda engine yet. Use --precision fp32 (with --tf32 for tensor cores)."


def bench_json(source, rates, stop_reason="completed", notes=()):
    return {
        "schema": "batchwise.bench", "schema_version": 1, "batchwise_version": "0.1.0+test",
        "engine": {"name": "cuda", "version": "0.1.0", "device": "Fake GPU",
                   "details": {"driver": "13.0", "cudnn": "9.14.0", "cublaslt": "13.0.0", "precision": "fp32"}},
        "model": {"source": source},
        "points": [{"batch_size": b, "concurrency": 1, "throughput_samples_per_s": r, "stable": b != 64, "spread": 0.02}
                   for b, r in rates.items()],
        "notes": list(notes), "stop_reason": stop_reason,
    }


def torch_lines(model, size, rates):
    """rates: {(batch, variant): images/s or 'error text'}"""
    out = []
    for (batch, variant), r in rates.items():
        line = {"model": model, "input": size, "variant": variant, "batch": batch, "device": "Fake GPU", "torch": "2.11.0",
                "torchvision": "0.26.0", "cuda": "13.0", "cudnn": 91400, "tf32": "off", "cudnn_benchmark": True}
        line.update({"images_per_s": r} if isinstance(r, (int, float)) else {"error": r})
        out.append(json.dumps(line))
    return "\n".join(out) + "\n"


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def fake_results(d):
    """resnet50 224: fp32 ok, fp16 refused. mobilenetv2: fp16 ok, meets at b=1, misses at b=8, b=64 failed.
    yolov8n: nothing run. resnet50 1600x1008: fp16 ok and meets, torch fp16-graph out of memory at b=8."""
    write(os.path.join(d, "context.json"), json.dumps({"device": "Fake GPU", "driver": "580.1", "memory": "81559 MiB",
                                                        "date": "2026-11-24T14:00:00+00:00", "host": "gpu", "mismatched": []}))
    write(os.path.join(d, "batchwise-resnet50-224-fp32.json"),
          json.dumps(bench_json("zoo:resnet50", {1: 900.0, 8: 5000.0, 64: 7000.0, 256: 7400.0})))
    write(os.path.join(d, "batchwise-resnet50-224-fp32.log"), "# batchwise bench ...\n[1/4] b=1\n# exit 0 after 9.0 s\n")
    write(os.path.join(d, "batchwise-resnet50-224-fp16.log"), f"# batchwise bench ...\nerror: {REFUSAL}\n# exit 2 after 1.0 s\n")
    write(os.path.join(d, "torch-resnet50-224.jsonl"), torch_lines("resnet50", "224x224", {
        (b, v): r for b, rs in {1: (223, 246, 1124), 8: (2335, 1779, 7000), 64: (5686, 12076, 13103), 256: (6214, 13774, 14020)}.items()
        for v, r in zip(compare.TORCH_VARIANTS, rs)}))
    write(os.path.join(d, "batchwise-mobilenetv2-224-fp16.json"),
          json.dumps(bench_json("zoo:mobilenetv2", {1: 2000.0, 8: 9000.0}, "batch_failed", ["b=64 failed: out of memory"])))
    write(os.path.join(d, "batchwise-mobilenetv2-224-fp16.log"), "# batchwise bench ...\n# exit 0 after 5.0 s\n")
    write(os.path.join(d, "torch-mobilenetv2-224.jsonl"), torch_lines("mobilenet_v2", "224x224", {
        (1, "fp32"): 300.0, (1, "fp16-graph"): 1500.0, (8, "fp16-graph"): 8000.0, (64, "fp16-graph"): 20000.0}))
    write(os.path.join(d, "batchwise-resnet50-1600x1008-fp16.json"),
          json.dumps(bench_json("zoo:resnet50?size=1600x1008", {1: 400.0, 8: 700.0})))
    write(os.path.join(d, "batchwise-resnet50-1600x1008-fp16.log"), "# exit 0 after 5.0 s\n")
    write(os.path.join(d, "torch-resnet50-1600x1008.jsonl"), torch_lines("resnet50", "1600x1008", {
        (1, "fp16-cl"): 173.0, (1, "fp16-graph"): 250.0, (8, "fp16-cl"): 429.0, (8, "fp16-graph"): "out of memory"}))


class TableTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        fake_results(self.dir)
        self.markdown = compare.write_table(self.dir)
        with open(os.path.join(self.dir, "peers.json"), encoding="utf-8") as f:
            self.doc = json.load(f)
        self.rows = {(r["model"], r["input"], r["batch"]): r for r in self.doc["rows"]}

    def tearDown(self):
        self.tmp.cleanup()

    def test_every_case_and_batch_has_a_row(self):
        self.assertEqual(len(self.doc["rows"]), sum(len(c.batches) for c in compare.CASES))
        self.assertIn(("resnet50", "1600x1008", 8), self.rows)
        self.assertIn(("yolov8n", "640x640", 64), self.rows)

    def test_refused_fp16_is_recorded_with_the_clis_message_and_fails_the_target(self):
        r = self.rows[("resnet50", "224x224", 1)]
        self.assertEqual(r["batchwise"]["fp16"]["status"], "refused: " + REFUSAL)
        self.assertEqual(r["batchwise"]["fp32"]["images_per_s"], 900.0)
        self.assertIsNone(r["ratio_fp16_vs_best"])
        self.assertIs(r["met"], False)
        self.assertIn("refused [1]", self.markdown)
        self.assertIn("[1] Batchwise fp16, resnet50 224x224: refused: " + REFUSAL, self.markdown)
        self.assertEqual(self.markdown.count("\n[1] "), 1, "one footnote for the same message")
        self.assertEqual(self.markdown.count("refused [1]"), 4)

    def test_best_pytorch_variant_and_ratios(self):
        r = self.rows[("resnet50", "224x224", 8)]
        self.assertEqual(r["best_pytorch"], {"variant": "fp16-graph", "images_per_s": 7000})
        self.assertAlmostEqual(r["ratio_fp32_vs_fp32"], round(5000 / 2335, 3))
        m = self.rows[("mobilenetv2", "224x224", 1)]
        self.assertAlmostEqual(m["ratio_fp16_vs_best"], round(2000 / 1500, 3))

    def test_ratio_target_met_and_missed_by_how_much(self):
        self.assertIs(self.rows[("mobilenetv2", "224x224", 1)]["met"], True)  # 1.33x >= 1.3x
        miss = self.rows[("mobilenetv2", "224x224", 8)]
        self.assertIs(miss["met"], False)
        self.assertEqual(miss["verdict"], "no: 1.12x < 1.3x")
        self.assertIn("mobilenetv2 224x224 b=8 (1.12x < 1.3x)", self.markdown)

    def test_absolute_floor_applies_at_b1_and_b256_of_resnet50_224_only(self):
        self.assertEqual(self.rows[("resnet50", "224x224", 1)]["target"], {"ratio": 1.5, "min_images_per_s": 2000})
        self.assertEqual(self.rows[("resnet50", "224x224", 256)]["target_text"], ">= 1.5x, >= 25,000 img/s")
        self.assertIsNone(self.rows[("resnet50", "224x224", 8)]["target"]["min_images_per_s"])
        case = compare.CASES[0]
        row = {"best_pytorch": {"variant": "fp16-graph", "images_per_s": 1000}, "ratio_fp16_vs_best": 1.9,
               "batchwise": {"fp16": {"images_per_s": 1900.0}}}
        self.assertEqual(compare.verdict(row, case, 1, ()), (False, "no: 1,900 < 2,000 img/s"))
        self.assertEqual(compare.verdict(row, case, 8, ()), (True, "yes"))

    def test_a_batch_missing_from_a_stopped_sweep_says_why(self):
        r = self.rows[("mobilenetv2", "224x224", 64)]
        self.assertEqual(r["batchwise"]["fp16"]["status"], "not measured: stop_reason batch_failed")
        self.assertEqual(r["batchwise"]["fp32"]["status"], "not run")

    def test_torch_errors_are_footnoted_and_best_skips_them(self):
        r = self.rows[("resnet50", "1600x1008", 8)]
        self.assertEqual(r["pytorch"]["fp16-graph"], "error: out of memory")
        self.assertEqual(r["best_pytorch"]["variant"], "fp16-cl")
        self.assertIs(r["met"], True)  # 700 / 429 = 1.63x >= 1.5x
        self.assertIn("PyTorch fp16-graph, resnet50 1600x1008 b=8: error: out of memory", self.markdown)

    def test_points_a_timed_out_torch_run_never_reached_say_so(self):
        write(os.path.join(self.dir, "torch-yolov8n-640.jsonl"), torch_lines("yolov8n", "640x640", {(1, "fp32"): 500.0}))
        write(os.path.join(self.dir, "torch-yolov8n-640.log"), "# python3 torch_bench.py\n\nerror: timed out after 200 s\n\n# exit timeout after 200.0 s\n")
        rows = {(r["model"], r["batch"]): r for r in json.loads(json.dumps(compare.build_rows(
            compare.CASES[2:3], {}, {"yolov8n-640": compare.read_torch(
                os.path.join(self.dir, "torch-yolov8n-640.jsonl"), os.path.join(self.dir, "torch-yolov8n-640.log"))[0]})))}
        self.assertEqual(rows[("yolov8n", 1)]["pytorch"]["fp32"], 500.0)
        self.assertEqual(rows[("yolov8n", 1)]["pytorch"]["fp16-cl"], "error: timed out after 200 s")
        self.assertEqual(rows[("yolov8n", 64)]["pytorch"]["fp32"], "error: timed out after 200 s")

    def test_nothing_run_is_not_judged(self):
        r = self.rows[("yolov8n", "640x640", 1)]
        self.assertIsNone(r["met"])
        self.assertIn("not judged", self.markdown)

    def test_header_names_device_driver_and_versions(self):
        head = self.markdown.split("| model")[0]
        self.assertIn("# Batchwise vs PyTorch: Fake GPU", head)
        self.assertIn("driver 580.1", head)
        self.assertIn("PyTorch 2.11.0 (torchvision 0.26.0), CUDA 13.0, cuDNN 9.14.0", head)
        self.assertIn("Batchwise 0.1.0+test, engine cuda 0.1.0 (driver 13.0, cudnn 9.14.0, cublaslt 13.0.0)", head)

    def test_summary_by_target(self):
        self.assertIn("- resnet50 224x224: fp16 >= 1.5x the best PyTorch variant at b=1,8,64,256, b=1 >= 2,000 img/s, "
                      "b=256 >= 25,000 img/s: NOT met (0 of 4 rows)", self.markdown)
        self.assertIn("- resnet50 1600x1008: fp16 >= 1.5x the best PyTorch variant at b=1,8: met (2 of 2 rows)", self.markdown)
        self.assertIn("- yolov8n 640x640: fp16 >= 1.3x the best PyTorch variant at b=1,8,64: not judged (0 of 3 rows)", self.markdown)

    def test_unstable_points_are_flagged(self):
        self.assertIn("7,000 (unstable)", self.markdown)

    def test_a_mismatched_torch_model_is_not_judged(self):
        rows = compare.build_rows(compare.CASES[2:3], {}, {}, mismatched=["yolov8n"])
        self.assertTrue(all(r["verdict"] == "n/a: torch model is not the zoo's" for r in rows))


class TorchBenchArgumentTests(unittest.TestCase):
    def test_cases_parse_sizes_as_height_by_width(self):
        self.assertEqual(torch_bench.parse_case("resnet50@1600x1008:1,8"), ("resnet50", (1600, 1008), [1, 8]))
        self.assertEqual(torch_bench.parse_case("yolov8n@640"), ("yolov8n", (640, 640), None))
        for bad in ("vgg@224", "resnet50@0", "resnet50@1x2x3", "resnet50@224:0"):
            with self.assertRaises(ValueError):
                torch_bench.parse_case(bad)

    def test_every_compare_case_is_a_valid_torch_case(self):
        for c in compare.CASES:
            name, (h, w), batches = torch_bench.parse_case(f"{c.torch_name}@{c.size}:{','.join(map(str, c.batches))}")
            self.assertEqual(f"{h}x{w}", c.input)
            self.assertEqual(batches, c.batches)


FAKE_CLI = r'''#!/usr/bin/env python3
import json, sys
args = sys.argv[1:]
if args[0] == "conformance":
    import os
    print("total: 1 cases on ort (1.31.1): ran 1, passed %d, failed 0" % (1 if os.path.isdir(args[1]) else 0))
    sys.exit(0)
if args[:2] == ["zoo", "export"]:
    open(args[args.index("-o") + 1], "w").write("onnx")
    print("wrote x: 289 nodes, 3,182,408 parameters, inputs images")
    sys.exit(0)
assert args[0] == "bench", args
precision = args[args.index("--precision") + 1]
if precision == "fp16":
    print("error: REFUSAL", file=sys.stderr)
    sys.exit(2)
batches = [int(b) for b in args[args.index("-b") + 1].split(",")]
points = [{"batch_size": b, "concurrency": 1, "throughput_samples_per_s": 100.0 * b, "stable": True} for b in batches]
json.dump({"batchwise_version": "0.1.0+fake", "engine": {"name": "cuda", "version": "0.1.0", "details": {}},
           "points": points, "notes": [], "stop_reason": "completed"}, open(args[args.index("--json") + 1], "w"))
print("table")
'''

FAKE_PYTHON = r'''#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
if args[0] == "-c":
    print("2.11.0 0.26.0 13.0 91400")
elif os.path.basename(args[0]) == "yolov8n.py":
    ok = args[args.index("--zoo-count") + 1] == "3182408" and "--onnx" in args
    os.makedirs(args[args.index("--conformance") + 1])
    print("yolov8n@640: torch learned parameters 3,157,184; zoo export reports 3,182,408 parameters: " + ("match" if ok else "MISMATCH"))
    sys.exit(0 if ok else 1)
elif os.path.basename(args[0]) == "torch_bench.py":
    name, _, batches = args[args.index("--case") + 1].partition(":")
    for b in batches.split(","):
        for v in ("fp32", "fp16-cl", "fp16-graph"):
            print(json.dumps({"model": name, "variant": v, "batch": int(b), "images_per_s": 50.0 * int(b), "torch": "2.11.0"}))
'''


class DriverTests(unittest.TestCase):
    """compare.py end to end with a fake CLI (fp16 refused) and a fake python (torch_bench, yolov8n check)."""

    def test_driver_runs_every_case_records_refusal_and_writes_one_table(self):
        with tempfile.TemporaryDirectory() as d:
            cli, py, out = os.path.join(d, "cli"), os.path.join(d, "python"), os.path.join(d, "out")
            write(cli, FAKE_CLI.replace("REFUSAL", REFUSAL))
            write(py, FAKE_PYTHON.replace("#!/usr/bin/env python3", "#!" + sys.executable))
            for f in (cli, py):
                os.chmod(f, os.stat(f).st_mode | stat.S_IEXEC)
            env = dict(os.environ, PATH=os.environ.get("PATH", ""))
            p = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare.py"),
                                "--cli", cli, "--python", py, "--out", out, "--budget", "120"],
                               capture_output=True, text=True, env=env, timeout=120, check=False)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            with open(os.path.join(out, "peers.json"), encoding="utf-8") as f:
                doc = json.load(f)
            self.assertEqual(len(doc["rows"]), 12)
            for r in doc["rows"]:
                self.assertEqual(r["batchwise"]["fp16"]["status"], "refused: " + REFUSAL)
                self.assertEqual(r["batchwise"]["fp32"]["images_per_s"], 100.0 * r["batch"])
                self.assertAlmostEqual(r["ratio_fp32_vs_fp32"], 2.0)
                self.assertIs(r["met"], False)
            check = doc["context"]["yolov8n_check"]
            self.assertTrue(check.startswith("ok: "), check)
            self.assertIn("zoo graph on ONNX Runtime vs this module with the zoo's weights (atol 1e-4, rtol 1e-3): total: 1 cases", check)
            self.assertIn("Targets met: 0 of 12 rows", p.stdout)
            with open(os.path.join(out, "batchwise-resnet50-1600x1008-fp32.log"), encoding="utf-8") as f:
                self.assertIn("'zoo:resnet50?size=1600x1008' --engine cuda --precision fp32 -b 1,8", f.read())
            self.assertTrue(os.path.exists(os.path.join(out, "peers.md")))
            self.assertFalse(os.path.exists(os.path.join(out, "yolov8n-640.onnx")))
            self.assertFalse(os.path.exists(os.path.join(out, "yolov8n-case")))

    def test_a_yolov8n_that_is_not_the_zoos_fails_the_run_and_is_not_judged(self):
        with tempfile.TemporaryDirectory() as d:
            cli, py, out = os.path.join(d, "cli"), os.path.join(d, "python"), os.path.join(d, "out")
            write(cli, FAKE_CLI.replace("REFUSAL", REFUSAL).replace("3,182,408 parameters", "3,182,409 parameters"))
            write(py, FAKE_PYTHON.replace("#!/usr/bin/env python3", "#!" + sys.executable))
            for f in (cli, py):
                os.chmod(f, os.stat(f).st_mode | stat.S_IEXEC)
            p = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare.py"),
                                "--cli", cli, "--python", py, "--out", out, "--cases", "yolov8n-640"],
                               capture_output=True, text=True, timeout=120, check=False)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("yolov8n check: MISMATCH", p.stdout)
            with open(os.path.join(out, "peers.json"), encoding="utf-8") as f:
                rows = json.load(f)["rows"]
            self.assertEqual([r["verdict"] for r in rows], ["n/a: torch model is not the zoo's"] * 3)

    def test_spent_budget_skips_jobs_but_still_writes_the_table(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out")
            p = subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare.py"),
                                "--cli", "/nonexistent/cli", "--python", sys.executable, "--out", out, "--budget", "0",
                                "--cases", "resnet50-224"], capture_output=True, text=True, timeout=60, check=False)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            with open(os.path.join(out, "peers.json"), encoding="utf-8") as f:
                rows = json.load(f)["rows"]
            self.assertEqual(len(rows), 4)
            self.assertTrue(all(r["batchwise"]["fp32"]["status"].startswith("skipped: ") for r in rows), rows[0])
            self.assertTrue(all(r["pytorch"]["fp32"].startswith("error: skipped: ") for r in rows), rows[0])


if __name__ == "__main__":
    if "--show" in sys.argv:
        with tempfile.TemporaryDirectory() as d:
            fake_results(d)
            sys.stdout.write(compare.write_table(d))
    else:
        unittest.main()
