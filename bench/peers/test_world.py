#!/usr/bin/env python3
"""Tests of world.py (the peer table across architectures): its table on fake results, and its driver end to end with a
fake CLI and a fake python that runs world.py's own export worker and PyTorch worker loop with fake exports and fake
timings. No GPU, torch, onnx or network needed:

    python3 bench/peers/test_world.py            # unittest; -v for names
    python3 bench/peers/test_world.py --show     # print the table the driver test renders
"""
import json
import os
import stat
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import world  # noqa: E402  (importable without torch)

REFUSAL = "operator 'Trilu' is not supported by the cuda engine yet. Run it on --engine ort, or file an issue with the model."

FAKE_CLI = r'''#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
assert args[0] == "bench", args
model = args[1]
if "/distilbert/" in model:
    print("error: REFUSAL", file=sys.stderr)
    sys.exit(2)
assert args[args.index("--precision") + 1] == "fp16" and args[args.index("--engine") + 1] == "cuda", args
rate = 200.0 if "/bert/" in model else 110.0
batches = [int(b) for b in args[args.index("-b") + 1].split(",")]
points = [{"batch_size": b, "concurrency": 1, "throughput_samples_per_s": rate * b, "stable": True} for b in batches]
if "/bert/" in model:  # its b=64 point held by the power cap, as a hot card's is
    for p in points:
        p["device_clocks"] = {"sm_clock_mhz": 1642.5 if p["batch_size"] == 64 else 1980.0, "limits": {"power cap": 1} if p["batch_size"] == 64 else {}}
out = args[args.index("--json") + 1]
json.dump({"batchwise_version": "0.1.0+fake", "engine": {"name": "cuda", "version": "0.1.0", "details": {"cudnn": "9.14.0"}},
           "points": points, "notes": [], "stop_reason": "completed"}, open(out, "w"))
if "--profile" in args:
    with open(out[:-len(".json")] + ".layers.csv", "w") as f:
        f.write("batch,order,layer,ms,share\n")
        for i in range(20):  # layer i takes (i + 1) * 0.01 ms: the slowest are the last
            f.write(f"{batches[0]},{i},/blocks.{i}/Conv,{(i + 1) * 0.01:.4f},{(i + 1) / 210:.6f}\n")
print("table")
'''

FAKE_PYTHON = r'''#!PYTHON
import os, sys, time
sys.path.insert(0, "HERE")
sys.modules["onnx"] = None  # as on a machine without onnx: a cached model.onnx is taken as it is
import world
args = sys.argv[1:]
assert os.path.basename(args[0]) == "world.py", args

def fake_export(kind, name, work):
    with open(os.path.join(work, "export-calls.txt"), "a") as f:
        f.write(name + "\n")
    if name == "llama":
        return {"name": name, "family": "hf", "export": "failed", "error": "RuntimeError: fake export failure"}
    os.makedirs(os.path.join(work, name), exist_ok=True)
    path = os.path.join(work, name, "model.onnx")
    open(path, "w").write("onnx")
    seq = world.BY_NAME[name].unit == "seq/s"
    return {"name": name, "family": kind, "path": path, "export": "ok", "shape_args": ["--shape", "seq=128"] if seq else []}

def fake_measure(request):
    if request["name"] == "gpt2":
        time.sleep(600)  # a hung PyTorch run: the driver kills the worker at its limit
    variants = [("fp16-fake", 100.0), ("fp16-fake-graph", 120.0)]
    if request["name"] == "bert":
        variants.append(("fp16-fake-unmasked-graph", 110.0))  # the third variant world.py times for such transformers
    for variant, per in variants:
        for b in request["batches"]:
            line = {"model": request["name"], "variant": variant, "batch": b, "device": "Fake GPU", "torch": "2.11.0",
                    "timm": "1.0.0", "transformers": "4.57.0", "cuda": "13.0", "cudnn": 91400}
            if variant.endswith("graph") and b == 64 and request["name"] == "resnext50_32x4d":
                line["error"] = "RuntimeError: fake capture failure"
            else:
                line["images_per_s"] = per * b
                # Windows as the worker writes them; DistilBERT b=64's graph variant moved within its run.
                moved = variant.endswith("graph") and b == 64 and request["name"] == "distilbert"
                line["windows"] = [0.7 * per * b, per * b, 1.01 * per * b] if moved else [per * b] * 3
            yield line

if "--export" in args:
    sys.exit(world.export_worker(args[1:], export_one=fake_export))
if "--torch-serve" in args:
    sys.exit(world.serve_torch(measure=fake_measure))
sys.exit("unexpected " + " ".join(args))
'''

MODELS = "resnext50_32x4d,bert,gpt2,distilbert,llama"


def write(path, text, executable=False):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    if executable:
        os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)


def run_driver(d, *extra, out="out", models=MODELS):
    cli, py = os.path.join(d, "cli"), os.path.join(d, "python")
    write(cli, FAKE_CLI.replace("#!/usr/bin/env python3", "#!" + sys.executable).replace("REFUSAL", REFUSAL), True)
    write(py, FAKE_PYTHON.replace("PYTHON", sys.executable).replace("HERE", HERE), True)
    return subprocess.run([sys.executable, os.path.join(HERE, "world.py"), "--cli", cli, "--python", py,
                           "--out", os.path.join(d, out), "--work", os.path.join(d, "work"), "--models", models,
                           "--jobs", "1", "--torch-limit", "6", *extra],
                          capture_output=True, text=True, timeout=120, check=False)


class DriverTests(unittest.TestCase):
    """world.py end to end, once (about 8 s: the hung PyTorch model waits out its 6 s limit); the tests read its table."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name
        cls.proc = run_driver(cls.dir, "--profile-worst", "2", "--budget", "100")
        cls.out = os.path.join(cls.dir, "out")
        with open(os.path.join(cls.out, "world.json"), encoding="utf-8") as f:
            cls.doc = json.load(f)
        with open(os.path.join(cls.out, "world.md"), encoding="utf-8") as f:
            cls.markdown = f.read()
        cls.rows = {(r["model"], r["batch"]): r for r in cls.doc["rows"]}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_driver_exits_zero_and_every_model_and_batch_has_a_row(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stdout + self.proc.stderr)
        self.assertEqual(sorted(self.rows), sorted((m, b) for m in MODELS.split(",") for b in (1, 64)))

    def test_best_pytorch_variant_ratio_and_verdict_against_1_2x(self):
        r = self.rows[("bert", 64)]
        self.assertEqual(r["batchwise"]["images_per_s"], 200.0 * 64)
        self.assertEqual(r["best_pytorch"], {"variant": "fp16-fake-graph", "per_s": 120.0 * 64, "windows": [120.0 * 64] * 3, "spread": 0.0})
        self.assertAlmostEqual(r["ratio"], round(200 / 120, 3))
        self.assertEqual((r["met"], r["verdict"]), (True, "yes"))
        self.assertEqual(r["unit"], "seq/s")
        low = self.rows[("resnext50_32x4d", 1)]
        self.assertEqual((low["met"], low["verdict"]), (False, "no: 0.92x < 1.2x"))
        self.assertEqual(low["unit"], "img/s")

    def test_a_second_graph_variant_shares_the_graph_column_with_its_label_and_competes_for_best(self):
        line = next(x for x in self.markdown.splitlines() if x.startswith("| bert |") and "| 1 |" in x)
        self.assertIn("| 120; 110 (unmasked) |", line)
        self.assertEqual(self.rows[("bert", 1)]["pytorch"]["fp16-fake-unmasked-graph"], 110.0)
        self.assertEqual(self.rows[("bert", 1)]["best_pytorch"]["variant"], "fp16-fake-graph")

    def test_a_peer_whose_windows_spread_is_flagged_in_its_row_and_under_the_table(self):
        r = self.rows[("distilbert", 64)]
        self.assertAlmostEqual(r["best_pytorch"]["spread"], 0.31)
        line = next(x for x in self.markdown.splitlines() if x.startswith("| distilbert |") and "| 64 |" in x)
        self.assertIn("(fp16-fake-graph; windows spread 31%)", line)
        self.assertIn("PyTorch's windows spread more than 15% (max - min over the median) at: distilbert b=64 31%", self.markdown)
        steady = next(x for x in self.markdown.splitlines() if x.startswith("| bert |") and "| 64 |" in x)
        self.assertNotIn("spread", steady)

    def test_a_failed_pytorch_point_is_footnoted_and_the_best_is_of_the_rest(self):
        r = self.rows[("resnext50_32x4d", 64)]
        self.assertEqual(r["pytorch"]["fp16-fake-graph"], "error: RuntimeError: fake capture failure")
        self.assertEqual(r["best_pytorch"]["variant"], "fp16-fake")
        self.assertIn("PyTorch fp16-fake-graph, resnext50_32x4d b=64: error: RuntimeError: fake capture failure", self.markdown)
        with open(os.path.join(self.out, "torch-worker.log"), encoding="utf-8") as f:  # a failed capture: a new worker next
            self.assertIn("(CUDA error: the next model gets a new worker)", f.read())
        self.assertEqual(self.rows[("bert", 1)]["best_pytorch"]["per_s"], 120.0)

    def test_a_refusal_is_a_row_with_the_clis_first_line(self):
        r = self.rows[("distilbert", 1)]
        self.assertEqual(r["batchwise"]["status"], "refused: " + REFUSAL)
        self.assertEqual((r["met"], r["verdict"]), (False, "no: Batchwise refused"))
        self.assertIn(f"Batchwise distilbert: refused: {REFUSAL}", self.markdown)

    def test_a_failed_export_is_a_row_with_its_error(self):
        r = self.rows[("llama", 64)]
        self.assertEqual(r["batchwise"]["status"], "export failed: RuntimeError: fake export failure")
        self.assertEqual((r["met"], r["verdict"]), (None, "n/a: export failed"))
        self.assertIn("Export llama: export failed: RuntimeError: fake export failure", self.markdown)

    def test_a_hung_pytorch_model_is_killed_at_its_limit_and_the_next_model_gets_a_new_worker(self):
        r = self.rows[("gpt2", 1)]
        self.assertEqual(r["pytorch"], {"fp16": "error: timed out after 6 s"})
        self.assertEqual((r["met"], r["verdict"]), (None, "n/a: no PyTorch number"))
        after = self.rows[("distilbert", 64)]  # measured by a fresh worker after gpt2's was killed
        self.assertEqual((after["best_pytorch"]["variant"], after["best_pytorch"]["per_s"]), ("fp16-fake-graph", 120.0 * 64))

    def test_text_models_get_the_sequence_length_and_images_do_not(self):
        with open(os.path.join(self.out, "bw-bert.log"), encoding="utf-8") as f:
            self.assertIn("--shape seq=128", f.read())
        with open(os.path.join(self.out, "bw-resnext50_32x4d.log"), encoding="utf-8") as f:
            text = f.read()
        self.assertIn("--engine cuda --precision fp16 -b 1,64", text)
        self.assertNotIn("--shape", text)

    def test_a_batchwise_point_held_by_the_power_cap_is_named_with_its_clock(self):
        self.assertIn("Batchwise's clock was held below its maximum at: bert b=64 1,642 MHz (power cap)", self.markdown)
        self.assertNotIn("bert b=1 1,980", self.markdown)

    def test_batchwise_runs_are_queued_back_to_back_as_the_peers_and_the_table_says_so(self):
        with open(os.path.join(self.out, "bw-resnext50_32x4d.log"), encoding="utf-8") as f:
            self.assertIn("--queue 20", f.read())
        self.assertIn("--precision fp16 --queue 20` (its runs enqueued 20 at a time back to back, as PyTorch's windows are)", self.markdown)
        self.assertEqual(world.queue_text({}), " (each run waited for before the next: a host round trip a run that PyTorch's windows do not pay)")

    def test_profile_worst_profiles_the_lowest_ratios_and_keeps_their_top_15_layers(self):
        self.assertEqual(sorted(self.doc["profiles"]), ["bert", "resnext50_32x4d"])
        p = self.doc["profiles"]["resnext50_32x4d"]
        self.assertEqual(p["batch"], 64)
        self.assertEqual(p["layers_total"], 20)
        self.assertEqual([layer["layer"] for layer in p["top"]], [f"/blocks.{i}/Conv" for i in range(19, 4, -1)])
        self.assertAlmostEqual(p["total_ms"], sum((i + 1) * 0.01 for i in range(20)), places=4)
        with open(os.path.join(self.out, "profile-resnext50_32x4d.log"), encoding="utf-8") as f:
            self.assertIn("-b 64 --profile", f.read())
        self.assertIn("### resnext50_32x4d (lowest ratio 0.92x at b=1)", self.markdown)
        self.assertIn("| 1 | `/blocks.19/Conv` | 0.2000 | 9.5% |", self.markdown)
        self.assertNotIn("`/blocks.4/Conv`", self.markdown)

    def test_table_only_renders_the_same_table_from_the_raw_files(self):
        p = subprocess.run([sys.executable, os.path.join(HERE, "world.py"), "--table-only", self.out],
                           capture_output=True, text=True, timeout=60, check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, self.markdown)

    def test_summary_counts_rows_and_models(self):
        # met: bert b=1, b=64; not judged: gpt2 (no PyTorch number) and llama (export failed)
        self.assertIn("**At >= 1.2x PyTorch's best: 2 of 6 rows (4 not judged); 1 of 5 models at every batch.**", self.markdown)
        self.assertIn("Below, worst first: resnext50_32x4d b=1 0.92x", self.markdown)
        self.assertIn("Batchwise has no number for: distilbert, llama", self.markdown)

    def test_a_second_call_reuses_the_exports_in_the_work_folder(self):
        with open(os.path.join(self.dir, "work", "export-calls.txt"), encoding="utf-8") as f:
            first = f.read().split()
        self.assertEqual(sorted(first), sorted(MODELS.split(",")))
        exported = run_driver(self.dir, "--export-only", out="exported", models="resnext50_32x4d,bert")
        self.assertEqual(exported.returncode, 0, exported.stdout + exported.stderr)
        self.assertIn("bert: ok (cached)", exported.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "exported", "bw-bert.log")), "--export-only runs no bench")
        again = run_driver(self.dir, out="again", models="resnext50_32x4d,bert")
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
        with open(os.path.join(self.dir, "work", "export-calls.txt"), encoding="utf-8") as f:
            self.assertEqual(f.read().split(), first)
        with open(os.path.join(self.dir, "again", "export-bert.json"), encoding="utf-8") as f:
            self.assertEqual(json.load(f)["shape_args"], ["--shape", "seq=128"])
        with open(os.path.join(self.dir, "again", "world.json"), encoding="utf-8") as f:
            self.assertEqual(json.load(f)["rows"][0]["batchwise"]["images_per_s"], 110.0)


class RerunTests(unittest.TestCase):
    def test_a_rerun_into_the_same_folder_keeps_nothing_of_the_first_run(self):
        with tempfile.TemporaryDirectory() as d:
            first = run_driver(d, "--profile-worst", "1", models="resnext50_32x4d,bert")
            self.assertEqual(first.returncode, 0, first.stdout + first.stderr)
            self.assertTrue(os.path.exists(os.path.join(d, "out", "profile-resnext50_32x4d.layers.csv")))
            again = run_driver(d, "--budget", "0", models="resnext50_32x4d,bert")  # every job skipped this time
            self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
            with open(os.path.join(d, "out", "world.json"), encoding="utf-8") as f:
                doc = json.load(f)
            self.assertEqual(doc["profiles"], {})
            for r in doc["rows"]:
                self.assertNotIn("images_per_s", r["batchwise"])
                self.assertIsNone(r["best_pytorch"])
                self.assertIsNone(r["met"])


class BudgetTests(unittest.TestCase):
    def test_a_spent_budget_skips_every_job_but_still_writes_the_table(self):
        with tempfile.TemporaryDirectory() as d:
            p = run_driver(d, "--budget", "0")
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            with open(os.path.join(d, "out", "world.json"), encoding="utf-8") as f:
                rows = json.load(f)["rows"]
            self.assertEqual(len(rows), 10)
            for r in rows:  # nothing exported within a zero budget: each row says so, none is judged a Batchwise failure
                self.assertTrue(r["batchwise"]["status"].startswith("skipped: not exported in time"), r["batchwise"])
                self.assertEqual((r["met"], r["verdict"]), (None, "not judged: skipped"))


class TableTests(unittest.TestCase):
    def test_a_skipped_model_is_not_judged(self):
        row = {"batchwise": {"status": "skipped: the world table's time budget was spent"}, "best_pytorch": None, "ratio": None}
        self.assertEqual(world.verdict(row), (None, "not judged: skipped"))

    def reference_case(self, peer):
        """DistilBERT b=64 at 54,000 (Batchwise) against a peer of `peer`, with a reference run whose peer took 46,590."""
        m = world.BY_NAME["distilbert"]
        batchwise = {m.name: {"points": {64: {"images_per_s": 54000.0, "stable": True}}, "status": "ok", "notes": []}}
        torch = {m.name: {(64, "fp16-sdpa"): peer}}
        reference = {"date": "2026-12-06T19:34:26+00:00", "device": "NVIDIA H100 80GB HBM3", "rates": {m.name: {"64": 46590.0}}}
        rows = world.build_rows([m], {m.name: {"export": "ok"}}, batchwise, torch, (64,), reference=reference)
        markdown = world.render_markdown(rows, {"device": "NVIDIA H100 80GB HBM3", "reference": reference}, {}, [m])
        return rows[0], markdown

    def test_a_pass_against_a_peer_far_below_its_reference_run_is_not_judged(self):
        row, markdown = self.reference_case(23719.0)
        self.assertEqual(row["ratio"], round(54000 / 23719, 3))
        self.assertEqual((row["met"], row["verdict"]), (None, "not judged: PyTorch at 51% of its reference"))
        self.assertIn("**At >= 1.2x PyTorch's best: 0 of 0 rows (1 not judged)", markdown)
        self.assertIn("PyTorch ran below 80% of its rate in the reference run (2026-12-06T19:34:26+00:00, NVIDIA H100 80GB HBM3) "
                      "at: distilbert b=64 51% (23,719 against 46,590; 1.16x against the reference's)", markdown)

    def test_engine_settings_from_the_environment_are_kept_and_shown_and_paths_are_not(self):
        environ = {"BATCHWISE_GELU_PRODUCT": "handoff", "BATCHWISE_CACHE_DIR": "/tmp/bw/cache", "BATCHWISE_REQUIRE_GPU": "1", "PATH": "/usr/bin"}
        self.assertEqual(world.engine_settings(environ), {"BATCHWISE_GELU_PRODUCT": "handoff"})
        m = world.BY_NAME["distilbert"]
        rows = world.build_rows([m], {m.name: {"export": "ok"}}, {m.name: {"points": {}, "status": "ok", "notes": []}}, {}, (64,))
        shown = world.render_markdown(rows, {"device": "NVIDIA H200", "batchwise_environment": world.engine_settings(environ)}, {}, [m])
        self.assertIn("- Batchwise's engine settings from the environment (not its defaults): `BATCHWISE_GELU_PRODUCT=handoff`", shown)
        self.assertNotIn("settings from the environment", world.render_markdown(rows, {"device": "NVIDIA H200"}, {}, [m]))

    def test_a_peer_near_its_reference_run_is_judged_as_usual(self):
        row, markdown = self.reference_case(45000.0)
        self.assertEqual((row["met"], row["verdict"]), (True, "yes"))
        self.assertNotIn("reference", row["best_pytorch"])
        self.assertNotIn("PyTorch ran below", markdown)

    def test_a_pass_against_a_peer_whose_windows_spread_is_not_judged(self):
        m = world.BY_NAME["distilbert"]
        windows = {m.name: {(64, "fp16-sdpa"): [40000.0, 37919.0, 26000.0, 38000.0, 39000.0]}}
        rows = world.build_rows([m], {m.name: {"export": "ok"}}, {m.name: {"points": {64: {"images_per_s": 54000.0}}, "status": "ok", "notes": []}},
                                {m.name: {(64, "fp16-sdpa"): 37919.0}}, (64,), windows=windows)
        self.assertEqual((rows[0]["met"], rows[0]["verdict"]), (None, "not judged: PyTorch's windows spread 37%"))

    def test_a_row_below_the_target_stays_a_failure_even_against_a_slow_peer(self):
        m = world.BY_NAME["distilbert"]
        rows = world.build_rows([m], {m.name: {"export": "ok"}}, {m.name: {"points": {64: {"images_per_s": 20000.0}}, "status": "ok", "notes": []}},
                                {m.name: {(64, "fp16-sdpa"): 23719.0}}, (64,), reference={"rates": {m.name: {"64": 46590.0}}})
        self.assertEqual((rows[0]["met"], rows[0]["verdict"]), (False, "no: 0.84x < 1.2x"))

    def test_a_reference_is_read_from_a_compressed_world_json(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "world.json.xz")
            with world.lzma.open(path, "wt", encoding="utf-8") as f:
                json.dump({"schema": "batchwise.world", "context": {"date": "x", "device": "H100"},
                           "rows": [{"model": "bert", "batch": 64, "best_pytorch": {"per_s": 44331.0}},
                                    {"model": "bert", "batch": 1, "best_pytorch": None}]}, f)
            self.assertEqual(world.reference_rates(path)["rates"], {"bert": {"64": 44331.0}})
            with open(os.path.join(d, "other.json"), "w", encoding="utf-8") as f:
                json.dump({"schema": "something.else"}, f)
            with self.assertRaisesRegex(ValueError, "is not a world.json"):
                world.reference_rates(os.path.join(d, "other.json"))

    def test_worst_names_each_model_once_lowest_first(self):
        rows = [{"model": "a", "ratio": 0.9}, {"model": "b", "ratio": 0.5}, {"model": "a", "ratio": 0.4},
                {"model": "c", "ratio": None}, {"model": "d", "ratio": 2.0}]
        self.assertEqual(world.worst(rows, 2), ["a", "b"])
        self.assertEqual(world.worst(rows, 9), ["a", "b", "d"])

    def test_the_model_list_covers_the_issues_families(self):
        timm = [m for m in world.MODELS if m.kind == "timm"]
        hf = [m for m in world.MODELS if m.kind == "hf"]
        self.assertGreaterEqual(len(timm), 12)
        self.assertGreaterEqual(len(hf), 4)
        for name in ("resnet50", "resnext50_32x4d", "regnetx_016", "regnety_016", "mobilenetv3_large_100", "efficientnet_b0",
                     "convnext_tiny", "vit_small_patch16_224", "deit_small_patch16_224", "swin_tiny_patch4_window7_224",
                     "densenet121"):
            self.assertIn(name, world.BY_NAME)
        for m in world.MODELS:  # every one is a model real_exports.py knows how to export
            self.assertIn(m.name, world.real_exports.TIMM if m.kind == "timm" else world.real_exports.HF)

    def test_an_unknown_model_is_refused_with_the_known_names(self):
        with self.assertRaisesRegex(ValueError, "unknown model.*nosuchnet.*known: resnext50_32x4d"):
            world.pick("resnet50,nosuchnet")


if __name__ == "__main__":
    if "--show" in sys.argv:
        with tempfile.TemporaryDirectory() as d:
            run_driver(d, "--profile-worst", "1")
            with open(os.path.join(d, "out", "world.md"), encoding="utf-8") as f:
                sys.stdout.write(f.read())
    else:
        unittest.main()
