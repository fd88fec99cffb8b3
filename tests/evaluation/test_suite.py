"""The evaluation suite on a tiny Zephyra, three synthetic domains and three adapters: zero-init (must equal the
base), trained for a few steps on one domain (must change its row), non-zero-init IA3 (another PEFT type)."""

import copy
import json
import math
import random

import pytest
import torch
from typer.testing import CliRunner

from zephyra.adapters import attach_adapter, save_adapter
from zephyra.evaluation import EvalError, compare_methods, evaluate_matrix, find_adapters, write_method_report, \
    write_report
from zephyra.evaluation.suite import EvalConfig, Evaluator, answer, perplexity_rows, sample_indices
from zephyra.model import ZephyraForCausalLM, preset_config
from zephyra.loader import load_model
from zephyra.tokenizer import build_tokenizer

runner = CliRunner()
WORDS = {
    "python": ["def", "return", "lambda", "import", "class", "yield", "list", "dict", "tuple", "print"],
    "chemistry": ["sodium", "oxide", "acid", "benzene", "ethanol", "argon", "isotope", "catalyst", "ion", "salt"],
    "geography": ["river", "mountain", "Peru", "Nile", "Andes", "desert", "island", "coast", "lake", "valley"],
}
SMALL = dict(max_ppl_tokens=400, max_questions=5, max_new_tokens=6, batch_size=4, seq_len=48)


def _texts(domain: str, n: int, seed: int) -> list[str]:
    rng = random.Random(f"{domain}-{seed}")
    return [" ".join(rng.choice(WORDS[domain]) for _ in range(rng.randint(10, 30))) + "." for _ in range(n)]


def _qa(domain: str, n: int, seed: int) -> list[dict]:
    rng = random.Random(f"qa-{domain}-{seed}")
    return [{"question": f"What is {w}?", "answer": f"{w} is a {domain} word."}
            for w in (rng.choice(WORDS[domain]) for _ in range(n))]


def _make_data(root):
    from datasets import Dataset, DatasetDict

    for d in WORDS:
        DatasetDict({s: Dataset.from_dict({"text": _texts(d, n, i)}) for i, (s, n) in
                     enumerate([("train", 60), ("validation", 4), ("test", 8)])}).save_to_disk(
            str(root / "domains" / d / "raw"))
        DatasetDict({s: Dataset.from_list(_qa(d, n, i)) for i, (s, n) in
                     enumerate([("train", 20), ("validation", 4), ("test", 7)])}).save_to_disk(
            str(root / "domains" / d / "qa"))
    return root


def _train_lora(model, tok, texts, steps=40):
    """A few Adam steps of a LoRA on ``texts``: an adapter that really learnt its domain."""
    peft = attach_adapter(model, "lora", name="chemistry", rank=4)
    rows = [torch.tensor([tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"]][:48]) for t in texts]
    opt = torch.optim.Adam([p for p in peft.parameters() if p.requires_grad], lr=2e-2)
    peft.train()
    for step in range(steps):
        x = rows[step % len(rows)][None]
        loss = peft(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return peft.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(base_dir, data_root, adapters_root, {name: adapter dir}, {method: adapter dir}, an adapter of another
    base). The chemistry LoRA is trained on chemistry's train split; the matrix scores the test split."""
    root = tmp_path_factory.mktemp("eval")
    data = _make_data(root / "data")
    tok = build_tokenizer([t for d in WORDS for t in _texts(d, 60, 0)] + [q["answer"] for d in WORDS
                          for q in _qa(d, 20, 0)] + ["What is it?"], vocab_size=300, min_frequency=1)
    torch.manual_seed(0)
    ZephyraForCausalLM(preset_config("tiny", vocab_size=len(tok), initializer_range=0.2)).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    base, tok = load_model(root / "base")
    dirs = {"python": save_adapter(attach_adapter(copy.deepcopy(base), "lora", name="python"),  # zero init
                                   root / "adapters" / "python", domain="python")}
    trained = _train_lora(copy.deepcopy(base), tok, _texts("chemistry", 60, 0))
    dirs["chemistry"] = save_adapter(trained, root / "adapters" / "chemistry", domain="chemistry",
                                     metrics={"train_seconds": 12.5, "peak_rss_mb": 321.0})
    torch.manual_seed(3)
    ia3 = attach_adapter(copy.deepcopy(base), "ia3", name="geography", identity_init=False)
    methods = {"ia3": save_adapter(ia3, root / "methods" / "geography-ia3", domain="geography"),
               "lora": dirs["chemistry"]}
    other = ZephyraForCausalLM(preset_config("tiny", vocab_size=len(tok), initializer_range=0.2))
    foreign = save_adapter(attach_adapter(other, "lora", name="python"), root / "foreign" / "python")
    return root / "base", data, root / "adapters", dirs, methods, foreign


@pytest.fixture(scope="module")
def result(setup):
    base, data, _, dirs, _, _ = setup
    return evaluate_matrix(base, dirs, data, progress=None, **SMALL)


# --- the matrix -------------------------------------------------------------------------------------------------

def test_matrix_shape_and_base_row(result):
    assert result.rows == ["base", "python", "chemistry"]
    assert result.domains == sorted(WORDS)
    for r in result.rows:
        assert list(result.cells[r]) == result.domains
        for d in result.domains:
            c = result.cells[r][d]
            assert c.questions == 5 and 0 < c.ppl_tokens <= SMALL["max_ppl_tokens"]
            assert math.isfinite(c.perplexity) and c.perplexity > 1 and 0 <= c.f1 <= 1 and 0 <= c.bleu <= 100
            assert len(result.answers[r][d]) == 5
    assert all(result.ratio("base", d) == 1.0 for d in result.domains)


def test_perplexity_is_exp_mean_token_nll(setup, result):
    """Recomputed row by row from the model's own (mean) loss, weighted by each row's predicted tokens."""
    from datasets import load_from_disk

    base, data, *_ = setup
    model, tok = load_model(base)
    texts = load_from_disk(str(data / "domains" / "python" / "raw"))["test"]["text"]
    rows = perplexity_rows(texts, tok, SMALL["max_ppl_tokens"], SMALL["seq_len"])
    total, count = 0.0, 0
    with torch.no_grad():
        for r in rows:
            x = torch.tensor([r])
            total += model(input_ids=x, labels=x).loss.item() * (len(r) - 1)
            count += len(r) - 1
    cell = result.cells["base"]["python"]
    assert cell.ppl_tokens == count
    assert cell.perplexity == pytest.approx(math.exp(total / count), rel=1e-5)


def test_perplexity_rows_are_held_out_documents_end_to_end(setup):
    from datasets import load_from_disk

    base, data, *_ = setup
    _, tok = load_model(base)
    texts = load_from_disk(str(data / "domains" / "geography" / "raw"))["test"]["text"]
    rows = perplexity_rows(texts, tok, 10_000, 32)
    stream = [t for r in rows for t in r]
    docs = [[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"], tok.eos_token_id] for t in texts]
    assert sorted(map(tuple, _split_docs(stream, tok.eos_token_id))) == sorted(map(tuple, docs))  # each doc once
    assert all(len(r) == 32 for r in rows[:-1])
    assert perplexity_rows(texts, tok, 100, 32) == perplexity_rows(texts, tok, 100, 32)  # deterministic
    assert sum(map(len, perplexity_rows(texts, tok, 100, 32))) == 100
    assert sample_indices(7, 5) == sample_indices(7, 5) and len(set(sample_indices(7, 5))) == 5


def _split_docs(stream, eos):
    doc, out = [], []
    for t in stream:
        doc.append(t)
        if t == eos:
            out.append(doc)
            doc = []
    return out


def test_zero_init_adapter_row_equals_the_base_row(result):
    for d in result.domains:
        assert result.ratio("python", d) == pytest.approx(1.0, abs=1e-5)
        assert result.cells["python"][d].f1 == result.cells["base"][d].f1
        assert [a["answer"] for a in result.answers["python"][d]] == [a["answer"] for a in result.answers["base"][d]]
    v = next(v for v in result.verdicts if v.adapter == "python")
    assert v.own_ppl_pass is False and v.own_f1_pass is False and v.others_pass is True  # the check can fail


def test_trained_adapter_changes_its_row_and_the_verdict_is_measured(result):
    own = result.ratio("chemistry", "chemistry")
    assert own < 0.9  # trained on chemistry's train split, scored on its test split
    assert any(abs(result.ratio("chemistry", d) - 1) > 1e-3 for d in result.domains if d != "chemistry")
    v = next(v for v in result.verdicts if v.adapter == "chemistry")
    assert v.own_ppl_ratio == own and v.own_ppl_pass == (own <= 0.5)
    assert v.other_ratios == {d: result.ratio("chemistry", d) for d in ("geography", "python")}
    assert v.others_pass == all(abs(r - 1) <= 0.1 for r in v.other_ratios.values())
    assert v.own_f1 == result.cells["chemistry"]["chemistry"].f1 and v.base_f1 == result.cells["base"]["chemistry"].f1


def test_shared_engine_answers_equal_peft_generate(setup):
    """The base and LoRA rows answer through the multi-adapter engine in shared batches; PEFT's own generate,
    one adapter at a time, is the reference."""
    base, data, _, dirs, _, _ = setup
    ev = Evaluator(base, dirs, EvalConfig(max_questions=5, max_new_tokens=6, batch_size=4, gen_batch_size=4))
    assert set(ev.engine.bank.names) == {"python", "chemistry"}
    dd = ev.load_domains(data, ["chemistry"])["chemistry"]
    dd.questions[0] = "What is sodium oxide, or ethanol? " * 3  # a longer prompt, so batches need padding
    shared = ev.answers(dd, ["base", "chemistry", "python"])
    for row in ("base", "chemistry", "python"):
        with ev.active(row) as model:
            assert shared[row] == answer(model, ev.tokenizer, dd.questions, 6, batch_size=5), row
    assert shared["chemistry"] != shared["base"]


def test_batched_left_padded_answers_equal_one_by_one(setup):
    base, *_ = setup
    model, tok = load_model(base)
    questions = ["What is sodium?", "What is the coast of Peru like, and the Nile?", "What is it?"]
    assert answer(model, tok, questions, 6, batch_size=3) == answer(model, tok, questions, 6, batch_size=1)


# --- reports ----------------------------------------------------------------------------------------------------

def test_report_files_hold_the_measured_numbers(result, tmp_path):
    out = write_report(result, tmp_path / "eval")
    for name in ("report.md", "results.json", "answers.json", "ppl_ratio.png", "qa_f1.png", "manifest.json"):
        assert (out / name).is_file(), name
    assert (out / "ppl_ratio.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    for r in result.rows:
        for d in result.domains:
            c = result.cells[r][d]
            assert f"{c.perplexity:.2f}" in md and f"{result.ratio(r, d):.3f}" in md and f"{c.f1:.3f}" in md
    assert "## Verdict" in md and "**fail**" in md  # the zero-init adapter cannot pass
    saved = json.loads((out / "results.json").read_text())
    assert saved["cells"]["chemistry"]["python"]["perplexity"] == result.cells["chemistry"]["python"].perplexity
    assert json.loads((out / "manifest.json").read_text())["kind"] == "eval-report"


def test_method_comparison(setup, tmp_path):
    base, data, _, _, methods, _ = setup
    comp = compare_methods(base, [methods["lora"], methods["ia3"]], data, progress=None, **SMALL)
    by = {r.method: r for r in comp.rows}
    assert set(by) == {"lora", "ia3"} and by["lora"].domain == "chemistry" and by["ia3"].domain == "geography"
    for m, r in by.items():
        files = [p for p in methods[m].rglob("*") if p.is_file() and p.name != "manifest.json"]
        assert r.bytes_on_disk == sum(p.stat().st_size for p in files)
        assert r.trainable_params > 0 and r.base_perplexity == comp.base_cells[r.domain].perplexity
    assert by["lora"].train_seconds == 12.5 and by["lora"].peak_rss_mb == 321.0 and by["ia3"].train_seconds is None
    assert by["lora"].ppl_ratio < 0.9 and abs(by["ia3"].ppl_ratio - 1) > 1e-4  # non-identity IA3 changes it
    out = write_method_report(comp, tmp_path / "methods")
    md = (out / "methods.md").read_text()
    assert f"{by['lora'].ppl_ratio:.3f}" in md and f"{by['ia3'].trainable_params:,}" in md
    assert (out / "methods.png").read_bytes()[:4] == b"\x89PNG"


def test_find_adapters_names_by_domain(setup):
    _, _, adapters_root, dirs, *_ = setup
    assert find_adapters(adapters_root) == {n: d for n, d in sorted(dirs.items())}
    with pytest.raises(EvalError, match="no such adapters directory"):
        find_adapters(adapters_root / "nope")


# --- the command line -------------------------------------------------------------------------------------------

def _eval(*args):
    from zephyra.cli import app

    return runner.invoke(app, ["eval", *map(str, args)])


def test_cli_adapters_writes_the_report(setup, tmp_path):
    base, data, adapters_root, *_ = setup
    res = _eval("adapters", "--base", base, "--adapters", adapters_root, "--data", data, "--out", tmp_path / "r",
                "--domains", "chemistry,python", "--max-questions", 2, "--max-new-tokens", 4, "--max-ppl-tokens", 200)
    assert res.exit_code == 0, res.output
    assert "chemistry: own ppl ratio" in res.stdout and (tmp_path / "r" / "report.md").is_file()
    saved = json.loads((tmp_path / "r" / "results.json").read_text())
    assert saved["domains"] == ["chemistry", "python"] and saved["rows"] == ["base", "chemistry", "python"]


def test_cli_methods_writes_the_table(setup, tmp_path):
    base, data, _, _, methods, _ = setup
    res = _eval("methods", "--base", base, "--adapters", methods["ia3"], "--adapters", methods["lora"], "--data", data,
                "--out", tmp_path / "m", "--max-questions", 2, "--max-new-tokens", 4, "--max-ppl-tokens", 200)
    assert res.exit_code == 0, res.output
    md = (tmp_path / "m" / "methods.md").read_text()
    assert "| ia3 | geography |" in md and "| lora | chemistry |" in md and "12" in md
    assert _eval("methods", "--base", base, "--data", data).stderr.strip() == \
        "error: no adapters given: pass --adapters DIR (repeatable)"


@pytest.mark.parametrize("case, expected", [
    ("missing base", "not a model directory"),
    ("no adapters", "no adapters found"),
    ("unknown domain", "unknown domain 'cooking'"),
    ("another base", "was trained on base"),
])
def test_cli_bad_input_is_one_line(setup, tmp_path, case, expected):
    base, data, adapters_root, _, _, foreign = setup
    args = {"base": base, "adapters": adapters_root, "domains": "python"}
    if case == "missing base":
        args["base"] = tmp_path / "nope"
    elif case == "no adapters":
        (tmp_path / "empty").mkdir()
        args["adapters"] = tmp_path / "empty"
    elif case == "unknown domain":
        args["domains"] = "cooking"
    else:
        args["adapters"] = foreign.parent
    res = _eval("adapters", "--base", args["base"], "--adapters", args["adapters"], "--data", data,
                "--domains", args["domains"], "--out", tmp_path / "r")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and expected in lines[-1], res.stderr
    assert not (tmp_path / "r").exists()


def test_isolation_trade_off_reads_the_matrix(setup, tmp_path):
    from zephyra.evaluation.isolation import markdown, plot, trade_off

    base, data, _, dirs, _, _ = setup
    res = trade_off(base, {"python@zero": str(dirs["python"]), "chemistry@trained": str(dirs["chemistry"])}, data,
                    max_ppl_tokens=512)
    zero, trained = res["variants"]["python@zero"], res["variants"]["chemistry@trained"]
    assert zero["own_ratio"] == pytest.approx(1.0) and zero["within_10pct"] == len(zero["others"])  # zero init
    assert trained["own_ratio"] < 1.0 and set(trained["others"]) == set(res["domains"]) - {"chemistry"}
    assert trained["mean_other"] == pytest.approx(sum(trained["others"].values()) / len(trained["others"]))
    assert "| chemistry@trained |" in markdown(res, "cmd") and plot(res, tmp_path / "p.png").stat().st_size > 0


def test_the_check_set_counts_facts_held_and_answers_that_say_they_do_not_know(tmp_path):
    from types import SimpleNamespace

    from zephyra.evaluation.checkset import run

    path = tmp_path / "check.jsonl"
    path.write_text('{"prompt": "What is the capital of Peru?", "expect": ["Lima"]}\n'
                    '{"prompt": "What is the symbol for iron?", "expect": ["Fe"]}\n'
                    '{"prompt": "What is the capital of Solara?"}\n')
    answers = {"What is the capital of Peru?": "The capital of Peru is LIMA. [1]",
               "What is the symbol for iron?": "I do not know: none of my chemistry sources says.",
               "What is the capital of Solara?": "I do not know: none of my geography sources says anything."}

    class System:
        def resolve(self, prompts, max_new_tokens):
            return [SimpleNamespace(text=answers[p]) for p in prompts]

    (r,) = run([path], system=System())
    assert (r["prompts"], r["with_fact"], r["fact_held"], r["said_unknown"]) == (3, 2, 1, 2)
