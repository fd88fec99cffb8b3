"""`zephyra data curate` and `zephyra data stats` through the Typer sub-app."""

import json

from datasets import load_from_disk
from typer.testing import CliRunner

from zephyra.data.cli import app
from zephyra.manifest import read_manifest

runner = CliRunner()
GOOD = ("A recipe for bread begins with flour, water, salt and yeast, but the baker's real ingredient is time, "
        "and the dough that rests overnight develops a deeper flavour.")


def write_inputs(folder):
    (folder / "notes.txt").write_text(f"{GOOD}\n\n{GOOD}\n\nToo short.\n\nMail me at someone@example.com about "
                                      "the bread and the flour and the water, which is all I need for the loaf.\n")
    (folder / "rows.jsonl").write_text(json.dumps({"text": GOOD.replace("bread", "cake")}) + "\n")
    return [folder / "notes.txt", folder / "rows.jsonl"]


def test_curate_prints_counts_and_writes_a_loadable_dataset(tmp_path):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "out"
    res = runner.invoke(app, ["curate", *map(str, inputs), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["in"] == 5 and result["out"] == 3
    assert result["dropped"]["exact_dedup"] == 1 and result["dropped"]["length"] == 1
    assert result["in"] - sum(result["dropped"].values()) == result["out"]
    ds = load_from_disk(str(out))
    assert ds.column_names == ["text", "domain", "source", "licence"] and len(ds) == 3
    assert "[EMAIL]" in ds[1]["text"] and ds[2]["source"] == "rows.jsonl"
    manifest = read_manifest(out)
    assert manifest["curation"]["in"] == 5 and set(manifest["inputs"]) == {str(p) for p in inputs}
    assert manifest["config"]["near_dedup"]["threshold"] == 0.8


def test_curate_overrides_and_human_output(tmp_path):
    inputs = write_inputs(tmp_path)
    res = runner.invoke(app, ["curate", *map(str, inputs), "--out", str(tmp_path / "o"), "--set",
                              "quality.min_words=1", "--set", "exact_dedup=false", "--set",
                              "near_dedup.enabled=false"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("5 records in, 5 kept")


def test_failed_curate_leaves_no_partial_output(tmp_path):
    inputs = write_inputs(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": oops}\n')
    out = tmp_path / "out"
    res = runner.invoke(app, ["curate", *map(str, inputs), str(bad), "--out", str(out)])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1].startswith(f"error: {bad}:2: malformed JSON")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "notes.txt", "rows.jsonl"]  # no temp dirs


def test_failed_curate_keeps_the_previous_output(tmp_path):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "out"
    assert runner.invoke(app, ["curate", *map(str, inputs), "--out", str(out)]).exit_code == 0
    before = read_manifest(out)["metrics"]["sha256"]
    res = runner.invoke(app, ["curate", str(tmp_path / "missing.txt"), "--out", str(out)])
    assert res.exit_code == 2 and "no such file" in res.output
    assert read_manifest(out)["metrics"]["sha256"] == before


def test_curate_skip_mode_counts_bad_input(tmp_path):
    inputs = write_inputs(tmp_path)
    (tmp_path / "bad.jsonl").write_text('{"text": oops}\n')
    (tmp_path / "empty.md").write_text("")
    res = runner.invoke(app, ["curate", *map(str, inputs), str(tmp_path / "bad.jsonl"), str(tmp_path / "empty.md"),
                              "--out", str(tmp_path / "out"), "--json", "--on-error", "skip"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["skipped"] == {"malformed_json": 1, "empty_file": 1}


def test_stats_on_a_curate_dir(tmp_path):
    inputs = write_inputs(tmp_path)
    out = tmp_path / "out"
    runner.invoke(app, ["curate", *map(str, inputs), "--out", str(out)])
    res = runner.invoke(app, ["stats", "--root", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split()[:4] == ["source", "package", "licence", "MB"]
    assert any(line.startswith("notes.txt") for line in lines) and any(line.startswith("TOTAL") for line in lines)
    assert (out / "plots" / "drops.png").stat().st_size > 1000
    rows = json.loads(runner.invoke(app, ["stats", "--root", str(out), "--json"]).stdout)
    assert (rows["notes.txt"]["records_in"], rows["notes.txt"]["records_out"]) == (4, 2)
    assert rows["notes.txt"]["dropped"] == {"length": 1, "exact_dedup": 1}
    res = runner.invoke(app, ["stats", "--root", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no manifest.json" in res.output
