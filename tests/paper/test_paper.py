"""zephyra paper from a small fixture of results: the PDF builds offline and shows the fixture's numbers; absent
sources print "missing: run ..."; the template types no number."""

import json
import re
import shutil
import subprocess
from importlib import resources

import pytest

from zephyra.errors import ArtifactError
from zephyra.paper.build import build_paper, check_latex, tex_escape, write_sources

try:
    check_latex()
    LATEX = None
except ArtifactError as e:
    LATEX = str(e)

MACHINE = {"cpu": "Fixture_CPU & 100% #1", "cores": 2, "affinity": 2, "memory_gib": 8.0, "avx512_bf16": False,
           "amx": False, "os": "Linux", "python": "3.11", "libraries": {"torch": "2.13.0+cpu", "peft": "0.21.2"}}


def _bench(name, **body):
    load = {"load1": 0.31, "load5": 0.2, "load15": 0.1, "busy": [], "idle": True}
    return {"bench": name, "status": "ok", "reason": None, "level": "tiny", "machine": MACHINE,
            "started": "2026-11-30T10:00:00+00:00", "finished": "2026-11-30T10:01:00+00:00", "seconds": 60,
            "load_before": load, "load_after": load, "rss_start_mib": 100, "peak_rss_mib": 200, **body}


def _model_rows():
    rows = []
    for arch, tok, ratio in (("zephyra", 6173.0, 1.37), ("llama", 4506.0, 1.0), ("gpt2", 4100.0, 0.91)):
        rows.append({"dtype": "bf16", "arch": arch, "params_non_embedding": 787840, "params_total": 1312128,
                     "tokens_per_s": tok, "steps_measured": 3, "peak_rss_mib": 455.0, "speed_vs_llama": ratio,
                     "memory_vs_llama": 0.96})
    return rows


def _base_result():
    """A zephyra bench base result of two candidates, its choice made by the real rule."""
    from zephyra.bench.base_choice import METRICS, scores

    def row(params, tokens, ppl, routing):
        return {"matmul_params": params, "tokens": tokens, "train_seconds": 300.0, "flops_per_token": 6.0 * params,
                "metrics": {"general_ppl": ppl, "phase1_category": 0.2, "grounded_qa": 0.3, "routing": routing},
                "curve": [{"seconds": 100.0, "val_perplexity": ppl * 2}, {"seconds": 300.0, "val_perplexity": ppl}]}

    rows = {"zephyra:mini": row(1_312_128, 5_734_400, 47.13, 0.91), "zephyra:base": row(20_458_368, 380_000, 187.65,
                                                                                        0.88)}
    return _bench("base", settings={"scale": 1.0, "reference": "zephyra:mini", "adapter_steps": 40, "max_questions": 40},
                  metrics=[{"name": m, "higher_is_better": h, "about": a} for m, h, a in METRICS], rows=rows,
                  choice=scores(rows))


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    bench, runs = root / "bench", root / "runs"
    bench.mkdir()
    (bench / "model.json").write_text(json.dumps(_bench(
        "model", config={"preset": "mini", "batch": 4, "seq": 128, "threads": 2, "dtypes": ["bf16"]},
        rows=_model_rows())))
    (bench / "base.json").write_text(json.dumps(_base_result()))
    (bench / "serve.json").write_text(json.dumps({**_bench("serve"), "status": "skipped",
                                                  "reason": "no trained system"}))
    (runs / "phase1").mkdir(parents=True)
    (runs / "phase1" / "results.json").write_text(json.dumps({"metrics": {
        "step": 400, "tokens": 1638400, "train_seconds": 250.4, "tok_per_s": 4321.0,
        "phase1/category_acc_train": 0.95, "phase1/category_acc_heldout": 0.16, "phase1/greeting_known": 0.71875}}))
    return root, bench, runs


@pytest.fixture(scope="module")
def built(fixture_dirs):
    if LATEX:
        pytest.skip(f"cannot build the PDF here: {LATEX}")
    root, bench, runs = fixture_dirs
    out = root / "out"
    pdf = build_paper(out, bench, runs)
    return out, subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def test_pdf_shows_the_fixture_numbers(built):
    out, text = built
    flat = " ".join(text.split())
    assert "1.37×" in flat  # the training-step ratio, through \trainRatioBf
    assert "4,321" in flat  # phase 1's tokens/s, through \phaseOneTokS
    assert "6,173" in flat  # the model table's tokens/s
    assert "187.7" in flat and "chooses zephyra:mini" in flat  # the base choice: the largest's perplexity, the rule's
    assert "6.6%" in flat and "the smaller model on more tokens has the lower perplexity" in flat  # the largest candidate's share of the reference's tokens, 380,000 / 5,734,400
    assert "CPU & 100% #1" in flat  # escaped text comes out as it was (Computer Modern draws "_" as a rule)
    # IEEEtran's small caps come out of pdftotext as "R EFERENCES" with Times, whole with Computer Modern
    assert "Zephyra Resolve" in flat and "REFERENCES" in flat.upper().replace(" ", "")


def test_absent_sources_say_what_to_run(built):
    out, text = built
    flat = " ".join(text.split())
    assert "missing: run zephyra eval system" in flat
    assert "benchmark skipped: no trained system" in flat
    missing = json.loads((out / "missing.json").read_text())
    assert "eval.system" in missing["sources"] and "bench.model" not in missing["sources"]
    assert "trainRatioBf" not in missing["macros"] and "trainRatioFp" in missing["macros"]  # no fp32 row


def test_bibliography_resolves(built):
    out, _ = built
    log = (out / "paper.log").read_text(errors="replace")
    assert not re.search(r"Citation .* undefined", log)
    assert (out / "paper.bbl").read_text().count(r"\bibitem") >= 15


def test_the_template_types_no_number():
    tex = resources.files("zephyra.paper").joinpath("paper.tex").read_text()
    body = "\n".join(line.split("%")[0] for line in tex.splitlines())  # comments aside
    body = re.sub(r"\\cite\{[^}]*\}|\\newcommand\{\\missing\}\[1\]|#1", "", body)  # citation keys, arguments
    for name in ("utf8", "Qwen3", "Phase~1", "Phase~2", "bf16", "fp32", "IA3", "BM25", "GPT-2", "F1"):
        body = body.replace(name, "")  # names, not measurements
    assert re.findall(r".{0,20}\d.{0,20}", body) == []
    used = set(re.findall(r"\\([A-Za-z]+)\{\}|\\([A-Za-z]+)\b", body))
    from zephyra.paper.build import MACROS
    names = {m for m, _, _ in MACROS}
    assert {n for pair in used for n in pair if n in names}, "the template uses the generated macros"


def test_tex_escape():
    assert tex_escape("a_b&c%d$e#f{g}h~i^j\\k") == (r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i"
                                                    r"\textasciicircum{}j\textbackslash{}k")


def test_sources_without_latex(fixture_dirs, tmp_path):
    _, bench, runs = fixture_dirs
    res = write_sources(tmp_path, bench, runs)
    macros = (tmp_path / "macros.tex").read_text()
    assert r"\newcommand{\trainRatioBf}{1.37$\times$}" in macros
    assert r"\newcommand{\phaseOneTokS}{4,321}" in macros
    assert "missing: run zephyra quickstart" in macros  # phase2 is not in the fixture
    assert "6,173" in (tmp_path / "tables" / "model.tex").read_text()
    assert res.get("bench.serve") is None and "skipped" in res.why("bench.serve")


@pytest.mark.skipif(shutil.which("latexmk") is not None, reason="latexmk is installed")
def test_clear_error_without_latexmk(tmp_path):
    with pytest.raises(ArtifactError, match="latexmk not found"):
        build_paper(tmp_path)


def test_the_committed_paper_matches_the_committed_results(tmp_path):
    """docs/paper was built from docs/bench/full-2026-12-02 and docs/paper/runs: regenerating its sources from
    them gives the committed macros, tables and template, and the committed PDF shows the base choice's numbers."""
    from pathlib import Path

    repo = Path(__file__).parents[2]
    docs = repo / "docs" / "paper"
    write_sources(tmp_path, repo / "docs" / "bench" / "full-2026-12-02", docs / "runs")
    assert (tmp_path / "macros.tex").read_text() == (docs / "macros.tex").read_text()
    assert (tmp_path / "paper.tex").read_text() == (docs / "paper.tex").read_text()
    for table in (tmp_path / "tables").glob("*.tex"):
        assert table.read_text() == (docs / "tables" / table.name).read_text(), table.name
    assert json.loads((docs / "missing.json").read_text())["macros"] == {}
    if shutil.which("pdftotext"):
        text = " ".join(subprocess.run(["pdftotext", str(docs / "paper.pdf"), "-"], capture_output=True, text=True,
                                       check=True).stdout.split())
        macros = dict(re.findall(r"\\newcommand\{\\(\w+)\}\{([^}]*)\}", (docs / "macros.tex").read_text()))
        for name in ("baseChosen", "baseLargestPpl", "baseReferencePpl", "trainRatioBf"):
            assert macros[name].replace("$\\times$", "×").replace("\\%", "%") in text, name
