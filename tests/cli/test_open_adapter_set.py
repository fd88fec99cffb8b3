"""The open adapter set: a seventh adapter joins a trained six-adapter system through the CLI, as a user would
add one (``data domain`` -> ``train adapter`` -> ``router train --adapters``), without touching the base or the
other six: their files stay byte for byte, all seven load, and the retrained router routes to the new one."""

import json
import random
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path[:0] = [str(Path(__file__).parents[1] / "router"), str(Path(__file__).parents[1] / "resolve")]
from router_helpers import make_split  # noqa: E402
from test_route import build_system  # noqa: E402

from zephyra.cli import app  # noqa: E402
from zephyra.data import DOMAINS  # noqa: E402
from zephyra.io import sha256_dir  # noqa: E402

runner = CliRunner()
POEMS = ["sonnet", "stanza", "couplet", "haiku", "limerick", "ballad", "elegy", "quatrain", "verse", "rhyme"]


def _ok(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (args, result.output)
    return result


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    """A trained system with six adapters and a router for them: base/, adapters/<six>/, router/ (test_route's
    build_system), and the router data it was trained on in data/router."""
    from datasets import Dataset, DatasetDict

    root = tmp_path_factory.mktemp("open")
    build_system(root)
    splits = {s: make_split(s) for s in ("train", "validation", "test")}
    DatasetDict({s: Dataset.from_dict({"prompt": v.prompts, "label": v.labels, "template": v.templates})
                 for s, v in splits.items()}).save_to_disk(str(root / "data" / "router"))
    return root


def _poetry_files(root: Path) -> tuple[Path, Path]:
    rng = random.Random(0)
    text = root / "poems.txt"
    text.write_text("\n\n".join(" ".join(rng.choice(POEMS + ["the", "a", "of", "and"]) for _ in range(20)) + "."
                                for _ in range(60)))
    qa = root / "poems.jsonl"
    qa.write_text("\n".join(json.dumps({"question": f"{t} {w}?", "answer": f"a {w} is a poem"})
                            for w in POEMS for t in ("What is a", "Tell me about the", "Explain the", "Describe a",
                                                             "Who writes a", "Why read a")))
    return text, qa


def test_a_seventh_adapter_joins_without_touching_the_base_or_the_six(six, tmp_path):
    from zephyra.resolve.system import load_system

    before = {p.name: sha256_dir(p) for p in [six / "base", *sorted((six / "adapters").iterdir())]}
    prompt = "Give me details on Ophelia, please."
    old = load_system(six / "base", six / "adapters", six / "router")
    old_answers = {d: old.resolve(prompt, adapter=d, max_new_tokens=4)[0].text for d in DOMAINS}
    old.close()
    # --- 1. the new domain's data, from the user's own files ---
    text, qa = _poetry_files(tmp_path)
    _ok(["data", "domain", "poetry", "--text", text, "--qa", qa, "--root", six / "data"])
    assert (six / "data" / "domains" / "poetry" / "qa" / "dataset_dict.json").is_file()
    # --- 2. its adapter, trained on the unchanged base ---
    _ok(["train", "adapter", "--domain", "poetry", "--base", six / "base", f"data_root={six / 'data'}",
         f"out_root={six / 'adapters'}", f"cache_dir={tmp_path / 'cache'}", "max_steps=3", "batch_size=4",
         "micro_batch_size=4", "seq_len=32", "eval_batches=1", "general_fraction=0", "rank=4", "warmup_steps=1"])
    after = {p.name: sha256_dir(p) for p in [six / "base", *sorted((six / "adapters").iterdir())]}
    assert {k: after[k] for k in before} == before and set(after) - set(before) == {"poetry"}
    # --- 3. all seven load on the base; the old router still serves its six (poetry only by name) ---
    system = load_system(six / "base", six / "adapters", six / "router")
    assert sorted(system.adapters) == sorted([*DOMAINS, "poetry"])
    assert {d: system.resolve(prompt, adapter=d, max_new_tokens=4)[0].text for d in DOMAINS} == old_answers
    assert system.resolve("What is a sonnet?", adapter="poetry", max_new_tokens=4)[0].adapter == "poetry"
    system.close()
    # --- 4. the router retrained for the new label set (its prompts from the new domain's questions) ---
    _ok(["router", "train", "--kind", "inmodel", "--model", six / "base", "--data", six / "data" / "router",
         "--adapters", six / "adapters", "--out", six / "router7"])
    spec = json.loads((six / "router7" / "router.json").read_text())
    assert spec["labels"] == ["base", *sorted([*DOMAINS, "poetry"])]
    routed = load_system(six / "base", six / "adapters", six / "router7")
    out = routed.resolve(["Tell me about the haiku?", "What is a compiler?"], max_new_tokens=4)
    assert [o.adapter for o in out] == ["poetry", "computing"] and routed.notes == []
    routed.close()
    assert {p.name: sha256_dir(p) for p in [six / "base", *sorted((six / "adapters").iterdir())]} == after


def test_a_domain_name_and_its_files_are_checked(six, tmp_path):
    text, _ = _poetry_files(tmp_path)
    for args, message in [(["data", "domain", "Base", "--text", text], "use lowercase letters"),
                          (["data", "domain", "base", "--text", text], "not base or auto"),
                          (["data", "domain", "computing2", "--text", tmp_path / "none.txt"], "no such file"),
                          (["data", "domain", "x", "--text", text, "--qa", text], "line 1: not JSON")]:
        result = runner.invoke(app, [*map(str, args), "--root", str(tmp_path / "d")])
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
    assert not (tmp_path / "d" / "domains" / "x").exists()  # nothing half-written
    _ok(["data", "domain", "x", "--text", text, "--root", tmp_path / "d"])
    again = runner.invoke(app, ["data", "domain", "x", "--text", str(text), "--root", str(tmp_path / "d")])
    assert again.exit_code == 2 and "exists" in again.stderr
