"""zephyra bench all at the tests' tiny level: JSON per benchmark, the report, skips with reasons, the docs tables
generated between markers only."""

import datetime as dt
import json
import os

import pytest

from zephyra.bench.all import BenchAllConfig, run_all
from zephyra.bench.report import load_results, update_docs, write_report
from zephyra.errors import ConfigError, DataError

RUN = ["components", "adapters", "engine", "router", "retrieval", "serve", "precision"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    absent = root / "absent"  # no trained system, no indexes: serve and retrieval must be skipped, router synthetic
    cfg = BenchAllConfig(level="tiny", only=RUN, base=absent / "base", adapters=absent / "adapters",
                         router=absent / "router", routers=absent / "routers", index=absent / "index",
                         data=absent / "data")
    out = root / "out"
    return out, run_all(cfg, out)


def test_every_benchmark_writes_valid_json(tiny_run):
    out, results = tiny_run
    assert list(results) == RUN
    for name in RUN:
        r = json.loads((out / f"{name}.json").read_text())
        assert r["bench"] == name and r["level"] == "tiny"
        assert r["machine"]["cores"] == os.cpu_count() and r["machine"]["libraries"]["torch"]
        assert dt.datetime.fromisoformat(r["started"]) <= dt.datetime.fromisoformat(r["finished"])
        assert r["load_before"]["load1"] >= 0 and isinstance(r["load_before"]["idle"], bool)
        assert r["peak_rss_mib"] >= r["rss_start_mib"] > 0
    for name in ("components", "adapters", "engine", "router", "precision"):
        assert results[name]["status"] == "ok", results[name].get("reason")
        assert results[name]["rows"]


def test_each_benchmark_has_its_baseline_in_the_same_run(tiny_run):
    _, r = tiny_run
    ratios = {q["ratio"] for q in r["adapters"]["ratios"]}
    assert {"ours mixed / PEFT mixed", "PEFT: mixed / single adapter", "ours: mixed / single adapter"} <= ratios
    variants = {x["variant"] for x in r["adapters"]["rows"]}
    assert {"peft_mixed", "ours_mixed", "base"} <= variants
    assert all("one_at_a_time" in x and "concurrent" in x for x in r["engine"]["rows"])
    assert r["router"]["rows"][0]["what"] == "prefill, no router" and r["router"]["prefill_ms"] > 0
    assert "random-weight" in r["router"]["model"]  # no trained base here: said so
    prec = {x["variant"]: x for x in r["precision"]["rows"]}
    assert set(prec) == {"fp32", "bf16", "int8"} and prec["fp32"]["speed_vs_fp32"] == 1.0
    assert prec["int8"]["weights_mib"] < prec["fp32"]["weights_mib"] and prec["bf16"]["size_vs_fp32"] < 0.6
    assert "random-weight" in r["precision"]["model"] and prec["int8"]["perplexity"] is None  # no trained base
    cases = [x["case"] for x in r["components"]["rows"]]
    assert cases[0].startswith("loss: logits") and r["components"]["rows"][0]["speed_vs_baseline"] == 1.0


def test_absent_artifacts_skip_with_a_reason(tiny_run):
    out, r = tiny_run
    assert r["serve"]["status"] == "skipped" and "quickstart" in r["serve"]["reason"]
    assert r["retrieval"]["status"] == "skipped" and "index" in r["retrieval"]["reason"]
    report = (out / "report.md").read_text()
    assert r["serve"]["reason"] in report and r["retrieval"]["reason"] in report


def test_report_is_generated_from_the_json(tiny_run, tmp_path):
    out, r = tiny_run
    report = (out / "report.md").read_text()
    assert "## Machine" in report and r["engine"]["machine"]["cpu"] in report
    assert f"{r['engine']['rows'][0]['one_at_a_time']['tok_per_s']:.0f}" in report
    for name in ("adapters", "engine", "components"):
        assert (out / f"{name}.png").stat().st_size > 1000
    # change a number in the JSON: the regenerated report shows it (nothing is typed)
    d = tmp_path / "copy"
    d.mkdir()
    engine = json.loads((out / "engine.json").read_text())
    engine["rows"][0]["one_at_a_time"]["tok_per_s"] = 98765.0
    (d / "engine.json").write_text(json.dumps(engine))
    assert "98765" in write_report(d, plots=False).read_text()


def test_docs_generator_replaces_only_between_markers(tiny_run, tmp_path):
    out, r = tiny_run
    doc = tmp_path / "bench.md"
    before = "# Benchmarks\n\nProse that stays, with a | table | line |.\n\n"
    middle = "\nMore prose between the tables.\n\n"
    after = "\nThe end.\n"
    doc.write_text(before + "<!-- bench:engine -->\nan old typed table\n<!-- /bench:engine -->\n" + middle +
                   "<!-- bench:nosuch -->\nleft as it is\n<!-- /bench:nosuch -->\n" + after)
    assert update_docs(doc, out) == ["engine"]
    text = doc.read_text()
    assert text.startswith(before + "<!-- bench:engine -->\n") and text.endswith(
        middle + "<!-- bench:nosuch -->\nleft as it is\n<!-- /bench:nosuch -->\n" + after)
    assert "an old typed table" not in text
    assert f"{r['engine']['rows'][-1]['concurrent']['tok_per_s']:.0f}" in text and "level `tiny`" in text
    assert update_docs(doc, out) == ["engine"] and doc.read_text() == text  # idempotent
    doc.write_text("<!-- bench:engine -->\nno end marker\n")
    with pytest.raises(DataError, match="unpaired"):
        update_docs(doc, out)


def test_bad_input_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="unknown benchmark"):
        BenchAllConfig(only=["nosuch"])
    with pytest.raises(ConfigError, match="level"):
        BenchAllConfig(level="huge")
    with pytest.raises(DataError, match="no such results directory"):
        load_results(tmp_path / "none")
    from typer.testing import CliRunner

    from zephyra.cli import app

    res = CliRunner().invoke(app, ["bench", "all", "--only", "nosuch", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "unknown benchmark" in res.output
    with pytest.raises(ConfigError, match="device must be cpu or cuda"):
        BenchAllConfig(device="tpu")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    from typer.testing import CliRunner

    from zephyra.bench.model import ModelBenchConfig
    from zephyra.cli import app

    with pytest.raises(ConfigError, match="device cuda: torch .* sees no CUDA device"):
        ModelBenchConfig(device="cuda")
    res = CliRunner().invoke(app, ["bench", "model", "--device", "cuda", "--preset", "tiny"])
    assert res.exit_code == 2 and "sees no CUDA device" in res.output
    proc = subprocess.run([sys.executable, "-m", "zephyra.bench.train_step", "--preset", "tiny", "--device", "cuda"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "torch sees no CUDA device" in proc.stderr.strip().splitlines()[-1]


def test_the_training_step_reports_its_device():
    from zephyra.bench.train_step import measure

    r = measure("zephyra", "tiny", 2, 16, "fp32", steps=1, warmup=0, vocab=64, threads=1, compile_=False, attn=None,
                device="cpu")
    assert r["device"] == "cpu" and r["tokens_per_s"] > 0


@pytest.mark.slow
def test_tiny_model_startup_and_serve(tmp_path):
    """The subprocess-heavy benchmarks (training step per architecture, CLI start) and the server on a tiny
    trained system (tests/cli's build_system)."""
    import sys
    from pathlib import Path

    sys.path[:0] = [str(Path(__file__).parents[1] / d) for d in ("router", "resolve", "cli")]
    from test_route import build_system

    dirs = build_system(tmp_path / "system")
    cfg = BenchAllConfig(level="tiny", only=["model", "serve", "startup"], base=dirs["base"],
                         adapters=dirs["adapters"], router=dirs["router"], routers=tmp_path / "none")
    r = run_all(cfg, tmp_path / "out")
    assert all(x["status"] == "ok" for x in r.values()), {k: x["reason"] for k, x in r.items()}
    assert {x["arch"] for x in r["model"]["rows"]} == {"zephyra", "llama", "gpt2"}
    assert r["serve"]["rows"][0]["answered"] == r["serve"]["rows"][0]["requests"]
