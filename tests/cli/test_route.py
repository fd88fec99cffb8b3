"""The runtime CLI: ``zephyra route`` (the JSON contract, gibberish to base, --file), ``zephyra generate --adapter``
(equal to the Resolver's answer), ``zephyra chat`` piped; bad input is one clear line, long prompts are cut.

The system is tiny and built once: a separable Zephyra (each domain's words on its own axis, so the right route
is known), its in-model router trained on synthetic prompts where "base" includes off-topic requests and
gibberish, and six random (non-identity) LoRA adapters.
"""

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

sys.path[:0] = [str(Path(__file__).parents[1] / "router"), str(Path(__file__).parents[1] / "resolve")]
from resolve_helpers import save_adapters  # noqa: E402
from router_helpers import make_model, make_split, make_tokenizer  # noqa: E402

from router_helpers import ROUTES  # noqa: E402

from zephyra.cli import app  # noqa: E402
from zephyra.data import DOMAINS  # noqa: E402

runner = CliRunner()
LONG = "Tell me about compiler, kernel and mutex. " * 80  # far past the tiny model's 128-token context


def build_system(root: Path) -> dict[str, Path]:
    """base/ (model + tokenizer), adapters/<domain>/, router/ under ``root``: the quickstart's layout."""
    from zephyra.router import InModelTrainConfig, train_inmodel_router

    tok = make_tokenizer()
    torch.manual_seed(0)
    model = make_model(tok)
    router, _ = train_inmodel_router(model, tok, make_split("train"), make_split("validation"), InModelTrainConfig())
    paths = {"base": root / "base", "adapters": root / "adapters", "router": root / "router"}
    model.save_pretrained(paths["base"])
    tok.save_pretrained(paths["base"])
    router.save(paths["router"])
    save_adapters(model, paths["adapters"], names=DOMAINS)
    return paths


@pytest.fixture(scope="module")
def system_dirs(tmp_path_factory):
    return build_system(tmp_path_factory.mktemp("system"))


def _opts(dirs, *keys):
    return [x for k in keys for x in (f"--{k}", str(dirs[k]))]


def _json_lines(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


# --- zephyra route --------------------------------------------------------------------------------------------

def test_route_json_contract(system_dirs):
    prompts = ["What is a compiler?", "Tell me about Polonius.", "Define benzene.", "hello"]
    result = runner.invoke(app, ["route", *prompts, "--json", *_opts(system_dirs, "base", "router")])
    assert result.exit_code == 0, result.output
    rows = _json_lines(result)
    assert len(rows) == len(prompts) == len(result.stdout.strip().splitlines())  # one object a line
    for row, prompt in zip(rows, prompts):
        assert list(row) == ["prompt", "adapter", "confidence", "scores"] and row["prompt"] == prompt
        assert row["adapter"] in ROUTES and isinstance(row["confidence"], float) and 0 <= row["confidence"] <= 1
        assert set(row["scores"]) == set(ROUTES) and all(isinstance(v, float) for v in row["scores"].values())
        assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert [r["adapter"] for r in rows] == ["computing", "shakespeare", "chemistry", "base"]


@pytest.mark.parametrize("prompt", ["xq zzv blorp qqq", "How do I tie a tie?", "Recommend a film."])
def test_gibberish_and_off_topic_go_to_base(system_dirs, prompt):
    result = runner.invoke(app, ["route", prompt, "--json", *_opts(system_dirs, "base", "router")])
    assert result.exit_code == 0, result.output
    assert _json_lines(result)[0]["adapter"] == "base"


def test_route_table(system_dirs):
    result = runner.invoke(app, ["route", "What is a compiler?", *_opts(system_dirs, "base", "router")])
    assert result.exit_code == 0, result.output
    assert "computing" in result.stdout and "confidence" in result.stdout


def test_route_file(system_dirs, tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text('{"prompt": "What is a compiler?"}\n\n{"prompt": "Who is Ophelia?", "id": 7}\n')
    result = runner.invoke(app, ["route", "--file", str(good), "--json", *_opts(system_dirs, "base", "router")])
    assert result.exit_code == 0, result.output
    assert [(r["prompt"], r["adapter"]) for r in _json_lines(result)] == [
        ("What is a compiler?", "computing"), ("Who is Ophelia?", "shakespeare")]
    for text, why in [('{"prompt": "ok"}\n{"prompt": "broken"\n', "line 2: not JSON"),
                      ('{"prompt": "ok"}\n["What is it?"]\n', 'line 2: expected an object with a "prompt"'),
                      ('{"text": "What is it?"}\n', 'line 1: expected an object with a "prompt"'),
                      ('{"prompt": "ok"}\n{"prompt": "  "}\n', "line 2: the prompt is empty")]:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text)
        result = runner.invoke(app, ["route", "--file", str(bad), *_opts(system_dirs, "base", "router")])
        assert result.exit_code == 2 and why in result.stderr, (text, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    result = runner.invoke(app, ["route", "--file", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_empty_prompts_are_one_clear_line(system_dirs):
    for argv in (["route", "  "], ["route"], ["generate", ""], ["generate", " \n "]):
        result = runner.invoke(app, [*argv, *_opts(system_dirs, "base")])
        assert result.exit_code == 2, (argv, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
        assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_long_prompts_are_cut_with_a_warning(system_dirs):
    route = runner.invoke(app, ["route", LONG, "--json", *_opts(system_dirs, "base", "router")])
    assert route.exit_code == 0, route.output
    assert _json_lines(route)[0]["adapter"] == "computing" and "warning:" in route.stderr
    gen = runner.invoke(app, ["generate", LONG, "--json", "--max-new-tokens", "4",
                              *_opts(system_dirs, "base", "adapters", "router")])
    assert gen.exit_code == 0, gen.output
    out = _json_lines(gen)[0]
    assert out["truncated"] and out["prompt_tokens"] == 128 - 4 and "cut to its last" in gen.stderr
    chat = runner.invoke(app, ["chat", "--max-new-tokens", "4", *_opts(system_dirs, "base", "adapters", "router")],
                         input=LONG + "\n")
    assert chat.exit_code == 0, chat.output
    assert "[computing " in chat.stdout and "cut to its last" in chat.stderr


# --- zephyra generate -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resolver(system_dirs):
    """The runtime's own answers (a System with no router) to compare the CLI's against."""
    from zephyra.adapters import scan_adapters
    from zephyra.loader import load_model
    from zephyra.resolve import System

    model, tok = load_model(system_dirs["base"])
    system = System(model, tok, scan_adapters(system_dirs["adapters"]))
    yield system
    system.close()


@pytest.mark.parametrize("adapter", ["python", "geography", "base"])
def test_generate_with_a_named_adapter_is_the_resolvers_answer(system_dirs, resolver, adapter):
    prompt = "What is a compiler?"
    result = runner.invoke(app, ["generate", prompt, "--adapter", adapter, "--json", "--max-new-tokens", "8",
                                 *_opts(system_dirs, "base", "adapters", "router")])
    assert result.exit_code == 0, result.output
    out = _json_lines(result)[0]
    expected = resolver.resolve(prompt, adapter=adapter, max_new_tokens=8)[0]
    assert (out["adapter"], out["confidence"], out["text"]) == (adapter, None, expected.text)
    assert {"adapter", "confidence", "text", "prompt_tokens", "new_tokens", "truncated"} <= set(out)
    assert out["new_tokens"] == expected.new_tokens and out["truncated"] is False


def test_generate_auto_routes_and_differs_from_forcing_another(system_dirs, resolver):
    args = ["--json", "--max-new-tokens", "8", *_opts(system_dirs, "base", "adapters", "router")]
    result = runner.invoke(app, ["generate", "Tell me about Polonius.", "--adapter", "auto", *args])
    assert result.exit_code == 0, result.output
    out = _json_lines(result)[0]
    assert out["adapter"] == "shakespeare" and 0 < out["confidence"] <= 1 and set(out["scores"]) == set(ROUTES)
    assert out["text"] == resolver.resolve("Tell me about Polonius.", adapter="shakespeare", max_new_tokens=8)[0].text
    plain = runner.invoke(app, ["generate", "Tell me about Polonius.", "--max-new-tokens", "8",
                                *_opts(system_dirs, "base", "adapters", "router")])
    assert plain.stdout.strip() == out["text"] and "[shakespeare " in plain.stderr  # stdout: the answer alone


def test_generate_refuses_an_unknown_adapter_listing_the_known_ones(system_dirs):
    result = runner.invoke(app, ["generate", "hi", "--adapter", "hamlet",
                                 *_opts(system_dirs, "base", "adapters", "router")])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: no adapter named 'hamlet'; known: auto, base, "
                                     + ", ".join(sorted(DOMAINS)))
    fused = runner.invoke(app, ["generate", "hi", "--adapter", "python", "--mode", "fused",
                                *_opts(system_dirs, "base", "adapters", "router")])
    assert fused.exit_code == 2 and "fused" in fused.stderr


def test_generate_without_a_router_answers_with_the_base_and_says_so(system_dirs, tmp_path):
    result = runner.invoke(app, ["generate", "What is a compiler?", "--json", "--max-new-tokens", "4",
                                 "--router", str(tmp_path / "no-router"), *_opts(system_dirs, "base", "adapters")])
    assert result.exit_code == 0, result.output
    assert _json_lines(result)[0]["adapter"] == "base" and "no router at" in result.stderr
    both = runner.invoke(app, ["generate", "hi", "--model", str(system_dirs["base"]),
                               *_opts(system_dirs, "adapters")])
    assert both.exit_code == 2 and "--model is a plain model directory" in both.stderr


# --- zephyra chat ---------------------------------------------------------------------------------------------

def test_chat_piped_shows_who_answered_and_switches(system_dirs, resolver):
    lines = ["What is a compiler?", "", "/adapter python", "What is a compiler?", "/adapter hamlet",
             "/adapter base", "What is a compiler?", "/quit", "never answered"]
    result = runner.invoke(app, ["chat", "--max-new-tokens", "6", *_opts(system_dirs, "base", "adapters", "router")],
                           input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    answers = [line for line in out if line.startswith("[")]
    assert len(answers) == 3
    assert answers[0].startswith("[computing 0.") or answers[0].startswith("[computing 1.")
    python = resolver.resolve("What is a compiler?", adapter="python", max_new_tokens=6)[0].text
    assert answers[1] == f"[python forced] {python}".rstrip()
    assert answers[2].startswith("[base forced]")
    assert "now answering with python" in out
    assert any(line.startswith("error: no adapter named 'hamlet'; known: auto, base") for line in out)

