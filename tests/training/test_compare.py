import json

import pytest

from zephyra.training.compare import CompareError, Curve, compare, read_curve, run_compare, tokens_to_reach


def _run(root, name, points, arch="zephyra"):
    d = root / name
    d.mkdir()
    lines = [{"step": i, "tokens": t - 1, "loss": 9.0, "tok_per_s": 1000.0 * (i + 1)} for i, (t, _) in enumerate(points)]
    lines += [{"step": i, "tokens": t, "val_loss": v} for i, (t, v) in enumerate(points)]
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (d / "config.yaml").write_text(f"model: {{arch: {arch}}}\n")
    return d


def test_tokens_to_reach_interpolates_between_evaluations():
    c = Curve("z", [100, 200, 300], [5.0, 4.0, 3.0])
    assert tokens_to_reach(c, 4.0) == 200.0
    assert tokens_to_reach(c, 3.5) == pytest.approx(250.0)
    assert tokens_to_reach(c, 5.5) == 100.0  # reached at the first evaluation
    assert tokens_to_reach(c, 2.0) is None  # never reached


def test_ratio_and_report(tmp_path):
    z = _run(tmp_path, "zephyra", [(100, 5.0), (200, 3.0), (300, 2.5)])
    g = _run(tmp_path, "gpt2", [(100, 5.5), (200, 4.0), (300, 3.5)], arch="gpt2")
    rows = {r["run"]: r for r in run_compare([z, g], g, tmp_path / "out")}
    # zephyra reaches gpt2's final 3.5 between 100 (5.0) and 200 (3.0): at 175 tokens, 175/300 of gpt2's
    assert rows["zephyra"]["token_ratio"] == pytest.approx(175 / 300)
    assert rows["gpt2"]["token_ratio"] == pytest.approx(1.0)
    assert rows["zephyra"]["arch"] == "zephyra" and rows["zephyra"]["tok_per_s"] == pytest.approx(2000.0)
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "0.58x" in md and "| gpt2 | gpt2 | 3.5000 |" in md
    assert (tmp_path / "out" / "val_loss.png").stat().st_size > 1000


def test_errors_are_one_line(tmp_path):
    with pytest.raises(CompareError, match="no metrics.jsonl"):
        read_curve(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 3}\n')
    with pytest.raises(CompareError, match="no validation evaluations"):
        read_curve(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("{oops\n")
    with pytest.raises(CompareError, match=r"metrics.jsonl:1: not JSON"):
        read_curve(tmp_path)
    with pytest.raises(CompareError, match="baseline 'x' is not among"):
        compare([Curve("z", [1], [1.0])], "x")
