"""The quickstart's stage logic: finished stages are skipped, --force redoes a stage and all after it."""

import pytest
from rich.console import Console

from zephyra import pipeline
from zephyra.pipeline import QuickstartConfig, Stage, run_quickstart


def _stages(done: set, ran: list):
    def make(name):
        return Stage(name, lambda cfg: name in done, lambda cfg, console: ran.append((name, set(cfg.redo))))
    return [make(n) for n in ("data", "phase1", "phase2", "adapters", "router", "demo")]


def test_finished_stages_are_skipped_and_force_redoes_the_rest(monkeypatch, tmp_path):
    ran = []
    monkeypatch.setattr(pipeline, "STAGES", _stages({"data", "phase1", "phase2"}, ran))
    run_quickstart(QuickstartConfig(root=tmp_path), console=Console(quiet=True))
    assert [n for n, _ in ran] == ["adapters", "router", "demo"]
    ran.clear()
    run_quickstart(QuickstartConfig(root=tmp_path), force="phase2", console=Console(quiet=True))
    assert [n for n, _ in ran] == ["phase2", "adapters", "router", "demo"]
    assert ran[1][1] == {"phase2", "adapters"}  # a forced stage retrains its finished parts too


def test_bad_stage_names_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown stage 'phase3'"):
        run_quickstart(QuickstartConfig(root=tmp_path), force="phase3", console=Console(quiet=True))
    with pytest.raises(ValueError, match="unknown stage.*router: use phase1, phase2 or adapters"):
        run_quickstart(QuickstartConfig(root=tmp_path, overrides={"router": ["x=1"]}), console=Console(quiet=True))


def test_the_shipped_recipes_the_stages_read_exist():
    cfg = QuickstartConfig()
    for name in ("phase1.yaml", "phase2.yaml", "adapters/default.yaml"):
        assert (cfg.recipes / name).is_file(), name
