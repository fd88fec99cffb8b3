"""Conversations between characters: each turn by its character's adapter, on the one streaming engine.

    system = open_characters(["hamlet", "ophelia"], base="runs/phase2/final", adapters="runs/shakespeare/adapters")
    for turn in converse(system, ["hamlet", "ophelia"], turns=6, scene="A room in the castle."):
        print(turn["speaker"], turn["text"])

A turn's prompt is the turn before it in the form the adapters were trained on ("Ophelia: My lord, ..."); the
opening turn answers the scene's setting (``scene``) or a greeting. Turn-taking: the next speaker is the one the
last turn addresses by name (a participant named in it), else the next in the list (round-robin). A character
never speaks for another: a turn ends at a blank line, and is cut at any participant's speaker label ("Ophelia:"),
marked ``spoke_for_another``. Every turn is one JSON object: {"turn", "speaker", "adapter", "version", "text",
"sources", "seed"}; a transcript
(a settings line, then the turns) is appended to a JSONL file as the conversation goes, which ``zephyra converse
watch FILE`` follows.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ...errors import DataError
from .characters import check_characters, display


def open_characters(slugs: Sequence[str], *, base: str | os.PathLike, adapters: str | os.PathLike):
    """A system (resolve/system.py) serving the characters' adapters under their slugs; a missing one is a
    one-line error naming the build command."""
    from ...resolve.system import load_system

    slugs = check_characters(slugs)
    root = Path(adapters)
    missing = [s for s in slugs if not (root / s / "adapter_config.json").is_file()]
    if missing:
        raise DataError(f"no adapter for {missing[0]!r} under {root}; train it: zephyra shakespeare build "
                        f"--characters {','.join(slugs)}")
    return load_system(base, None, None, adapter_dirs={s: root / s for s in slugs})


def next_speaker(text: str, speaker: str, order: Sequence[str]) -> str:
    """The participant ``text`` addresses by name (exactly one other named), else the next after ``speaker``."""
    words = set(re.findall(r"[a-z]+", text.casefold()))
    named = [s for s in order if s != speaker and display(s).split()[-1].casefold() in words]
    if len(named) == 1:
        return named[0]
    return order[(order.index(speaker) + 1) % len(order)]


def converse(system, slugs: Sequence[str], *, turns: int = 6, scene: str | None = None, max_tokens: int = 48,
             temperature: float = 0.8, top_p: float = 0.95, seed: int = 0, log: str | os.PathLike | None = None,
             steer: str = "none") -> Iterator[dict]:
    """Yield the conversation's turns as they are made (see the module's notes); ``log``: a JSONL transcript;
    ``steer="bias"``: each speaker's vocabulary logit bias (steering.py)."""
    from ...registry.store import version_of
    from ...resolve.engine import Request
    from ...resolve.sampling import SamplingParams

    slugs = check_characters(slugs)
    if len(slugs) < 2 or len(slugs) > 4:
        raise DataError(f"a conversation has two to four characters, got {len(slugs)}")
    if not isinstance(turns, int) or turns < 1:
        raise DataError(f"turns must be a positive number, got {turns!r}")
    if steer not in ("none", "bias"):
        raise DataError(f"steer must be none or bias, got {steer!r}")
    versions = {s: version_of(system.adapter_dirs[s]) for s in slugs}
    biases: dict[str, dict] = {s: {} for s in slugs}
    if steer == "bias":
        from .steering import vocabulary_bias

        cache: dict = {}
        biases = {s: vocabulary_bias(s, system.tokenizer, cache=cache) for s in slugs}
    # a turn ends at a blank line; anything from a participant's speaker label on is cut (OpenAI allows four stop
    # strings, four characters have eight labels), and the turn says it was
    labels = re.compile(r"\b(?:" + "|".join(re.escape(display(s)) for s in slugs) + r")\s*:", re.IGNORECASE)
    stops = ["\n\n"]
    settings = {"kind": "settings", "characters": slugs, "turns": turns, "scene": scene, "max_tokens": max_tokens,
                "temperature": temperature, "top_p": top_p, "seed": seed, "versions": versions, "steer": steer,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = None
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "a", encoding="utf-8")
        out.write(json.dumps(settings) + "\n")
        out.flush()
    try:
        speaker = slugs[0]
        prompt = f"[{scene}]" if scene else f"{display(slugs[1])}: Good day, my lord."
        for t in range(1, turns + 1):
            request = Request(prompt, adapter=speaker, sampling=SamplingParams(
                max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed + t, stop=stops,
                logit_bias=biases[speaker]))
            completion = system.engine.run([request])[0]
            if completion.finish_reason == "error":
                raise RuntimeError(f"turn {t}: generation failed: {completion.error}")
            raw = completion.text
            label = labels.search(raw)
            text = " ".join((raw[:label.start()] if label else raw).split()) or "..."
            turn = {"kind": "turn", "turn": t, "speaker": display(speaker), "adapter": speaker,
                    "version": versions[speaker], "text": text, "sources": [], "seed": seed + t,
                    "finish_reason": completion.finish_reason, "spoke_for_another": label is not None}
            if out is not None:
                out.write(json.dumps(turn) + "\n")
                out.flush()
            yield turn
            prompt = f"{display(speaker)}: {text}"
            speaker = next_speaker(text, speaker, slugs)
    finally:
        if out is not None:
            out.close()


def watch(path: str | os.PathLike, *, follow: bool = True, idle: float = 0.5, stop_after: float | None = None
          ) -> Iterator[dict]:
    """The records of a transcript as they are appended (``follow``: keep waiting for more, until ``stop_after``
    seconds without a new line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such transcript (zephyra converse --log FILE writes one)")
    waited = 0.0
    with open(path, encoding="utf-8") as f:
        while True:
            line = f.readline()
            if line.strip():
                waited = 0.0
                try:
                    yield json.loads(line)
                except ValueError:
                    raise DataError(f"{path}: a line that is not JSON: {line[:60]!r}") from None
                continue
            if not follow or (stop_after is not None and waited >= stop_after):
                return
            time.sleep(idle)
            waited += idle
