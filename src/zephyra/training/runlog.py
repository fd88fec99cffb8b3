"""What a run reports while it trains: ``metrics.jsonl`` (one JSON object per log or evaluation step), TensorBoard
scalars under ``tb/``, and a rich progress bar with loss, tokens/s and ETA. Only rank 0 writes anything.

On resume, records after the checkpoint's step (written by the interrupted run before it died) are dropped from
``metrics.jsonl`` and purged from TensorBoard, so both read as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..io import atomic_write_text


class RunLog:
    def __init__(self, out: Path, main: bool, start_step: int, total_steps: int, progress: bool, name: str):
        self.main = main
        self.metrics_path = out / "metrics.jsonl"
        self.last_loss: float | None = None
        self._windows: list[tuple[float, float]] = []  # (tokens/s, weight) of every log window
        self._writer = self._progress = self._task = None
        if not main:
            return
        from rich.console import Console
        from torch.utils.tensorboard import SummaryWriter

        self._truncate(start_step)
        self._writer = SummaryWriter(str(out / "tb"), purge_step=start_step + 1 if start_step else None)
        self.console = Console(stderr=True)
        if progress:
            self._progress = _progress_bar(self.console)
            self._progress.start()
            self._task = self._progress.add_task(name, total=total_steps, completed=start_step, loss=math.nan,
                                                 tps=0.0)

    def _truncate(self, start_step: int) -> None:
        keep = []
        if start_step and self.metrics_path.is_file():
            for line in self.metrics_path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= start_step:
                        keep.append(line)
                except (ValueError, KeyError):
                    break  # a line cut by the kill: nothing after it is trusted
        atomic_write_text(self.metrics_path, "".join(f"{line}\n" for line in keep))

    def record(self, rec: dict) -> None:
        if "loss" in rec:
            self.last_loss = rec["loss"]
        if "tok_per_s" in rec:
            self._windows.append((rec["tok_per_s"], 1.0))
        if not self.main:
            return
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        for key, value in rec.items():
            if key not in ("step", "tokens") and isinstance(value, (int, float)):
                self._writer.add_scalar(_tag(key), value, rec["step"])
        if self._task is not None and "tok_per_s" in rec:
            self._progress.update(self._task, tps=rec["tok_per_s"])
        if "val_loss" in rec:
            self.message(f"step {rec['step']}: val_loss {rec['val_loss']:.4f} (perplexity {rec['val_perplexity']:.2f})")
        elif self._task is None or not self.console.is_terminal:
            self.message(f"step {rec['step']}: loss {rec['loss']:.4f}, lr {rec['lr']:.2e}, "
                         f"{rec['tok_per_s']:,.0f} tok/s")

    def advance(self, step: int, loss: float) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=step, loss=loss)

    def message(self, text: str) -> None:
        if self.main:
            (self._progress.console if self._progress else self.console).print(text)

    def median_tok_per_s(self) -> float | None:
        """Median tokens/s of the log windows, leaving out the first (warm-up, compilation) when there are more
        than two: the median shrugs off a window slowed by other work on a shared machine."""
        w = sorted(t for t, _ in (self._windows[1:] if len(self._windows) > 2 else self._windows))
        if not w:
            return None
        mid = len(w) // 2
        return w[mid] if len(w) % 2 else 0.5 * (w[mid - 1] + w[mid])

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = self._task = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _tag(key: str) -> str:
    """TensorBoard tag: val_loss -> val/loss, loss -> train/loss; keys with a slash are kept."""
    if "/" in key:
        return key
    return f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"


def _progress_bar(console):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[tps]:,.0f} tok/s"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)
