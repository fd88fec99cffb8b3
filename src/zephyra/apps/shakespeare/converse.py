"""Conversations between characters: each turn by its character's adapter, on the one streaming engine.

    system = open_characters(["hamlet", "ophelia"], base="runs/phase2/final", adapters="runs/shakespeare/adapters")
    for turn in converse(system, ["hamlet", "ophelia"], turns=6, scene="A room in the castle."):
        print(turn["speaker"], turn["text"])

A turn's prompt is the turn before it in the form the adapters were trained on ("Ophelia: My lord, ..."); the
opening turn answers the scene's setting (``scene``) or a greeting. Turn-taking: the next speaker is the one the
last turn addresses by name (a participant named in it), else the next in the list (round-robin). A character
never speaks for another: a turn ends at a blank line, and is cut at any participant's speaker label ("Ophelia:"),
marked ``spoke_for_another``. Every turn is one JSON object: {"turn", "speaker", "adapter", "version", "text",
"sources", "seed"} (and "scores" with a scorer); a transcript
(a settings line, then the turns) is appended to a JSONL file as the conversation goes, which ``zephyra converse
watch FILE`` follows. ``converse_many`` runs several conversations at once, one mixed-adapter batch a turn.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ...errors import DataError
from ...io import append_line
from ...retrieval.pii import PIIConfig, scrub_pii
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


class Conversation:
    """One conversation's state: the next request to make, and what a completion of it becomes (a turn). Driven
    one at a time by ``converse``, several in lockstep by ``converse_many`` (one mixed-adapter batch a step)."""

    def __init__(self, system, slugs: Sequence[str], *, turns: int = 6, scene: str | None = None,
                 max_tokens: int = 48, temperature: float = 0.8, top_p: float = 0.95, seed: int = 0,
                 log: str | os.PathLike | None = None, steer: str = "none", names: dict[str, str] | None = None,
                 scorer=None, cache: dict | None = None, memory: str | os.PathLike | None = None):
        from ...registry.store import version_of

        slugs = check_characters(slugs)
        if len(slugs) < 2 or len(slugs) > 4:
            raise DataError(f"a conversation has two to four characters, got {len(slugs)}")
        if not isinstance(turns, int) or turns < 1:
            raise DataError(f"turns must be a positive number, got {turns!r}")
        if steer not in ("none", "bias"):
            raise DataError(f"steer must be none or bias, got {steer!r}")
        self.system, self.slugs, self.turns, self.seed = system, slugs, turns, seed
        self.names = {s: (names or {}).get(s, s) for s in slugs}  # slug -> the system's adapter name
        missing = [n for n in self.names.values() if n not in system.adapter_dirs]
        if missing:
            raise DataError(f"the system serves no adapter {missing[0]!r}; it has: {', '.join(system.adapter_dirs)}")
        self.versions = {s: version_of(system.adapter_dirs[self.names[s]]) for s in slugs}
        self.biases: dict[str, dict] = {s: {} for s in slugs}
        if steer == "bias":
            from .steering import vocabulary_bias

            cache = {} if cache is None else cache
            self.biases = {s: vocabulary_bias(s, system.tokenizer, cache=cache) for s in slugs}
        self.max_tokens, self.temperature, self.top_p, self.scorer = max_tokens, temperature, top_p, scorer
        # a turn ends at a blank line; anything from a participant's speaker label on is cut (OpenAI allows four
        # stop strings, four characters have eight labels), and the turn says it was
        self.labels = re.compile(r"\b(?:" + "|".join(re.escape(display(s)) for s in slugs) + r")\s*:", re.IGNORECASE)
        self.memory = None
        if memory is not None:  # RAG from the plays: each speaker's own lines recalled at each turn (rag.py)
            from .rag import open_memory

            self.memory = {s: open_memory(memory, s) for s in slugs}
        self.scene = scene
        self.settings = {"kind": "settings", "characters": slugs, "turns": turns, "scene": scene,
                         "max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
                         "versions": self.versions, "steer": steer, "rag": memory is not None,
                         "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.log = Path(log) if log is not None else None
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            append_line(self.log, json.dumps(self.settings))
        self.speaker = slugs[0]
        self.prompt = f"[{scene}]" if scene else f"{display(slugs[1])}: Good day, my lord."
        self.recalled: list[dict] = []
        self.made: list[dict] = []

    @property
    def done(self) -> bool:
        return len(self.made) >= self.turns

    def request(self):
        from ...resolve.engine import Request
        from ...resolve.sampling import SamplingParams

        t = len(self.made) + 1
        messages = self.prompt
        self.recalled = []
        if self.memory is not None:
            from .rag import rag_messages, recall, sources_for

            self.recalled = recall(self.memory[self.speaker], [self.prompt])[0]
            messages = rag_messages(self.prompt, sources_for(self.speaker, self.prompt, self.recalled, self.scene,
                                                             self.system.tokenizer))
        return Request(messages, adapter=self.names[self.speaker], sampling=SamplingParams(
            max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p, seed=self.seed + t,
            stop=["\n\n"], logit_bias=self.biases[self.speaker]))

    def take(self, completion) -> dict:
        """The turn ``completion`` (of ``request()``) makes: logged, and the next prompt and speaker set."""
        t = len(self.made) + 1
        if completion.finish_reason == "error":
            raise RuntimeError(f"turn {t}: generation failed: {completion.error}")
        raw = completion.text
        label = self.labels.search(raw)
        # generated text is scrubbed as training text is (a memorised email or number is not repeated; names stay)
        text = scrub_pii(" ".join((raw[:label.start()] if label else raw).split()), PIIConfig()) or "..."
        speaker = self.speaker
        turn = {"kind": "turn", "turn": t, "speaker": display(speaker), "adapter": self.names[speaker],
                "version": self.versions[speaker], "text": text, "sources": [x["id"] for x in self.recalled],
                "seed": self.seed + t,
                "finish_reason": completion.finish_reason, "spoke_for_another": label is not None}
        if self.scorer is not None:
            turn["scores"] = turn_scores(self.scorer, speaker, text, [m["text"] for m in self.made[-2:]])
        if self.log is not None:
            append_line(self.log, json.dumps(turn))
        self.made.append(turn)
        self.prompt = f"{display(speaker)}: {text}"
        self.speaker = next_speaker(text, speaker, self.slugs)
        return turn


def turn_scores(scorer, slug: str, text: str, before: Sequence[str]) -> dict:
    """A turn's scores: the probability the speaker classifier gives its speaker (and whom it names), the share of
    its words already in the two turns before it, and its word repetition."""
    from .fidelity import style, words

    probs = scorer.probabilities(text)
    seen = {x for t in before for x in words(t)}
    w = words(text)
    return {"attribution": round(probs.get(slug, 0.0), 4), "named": max(probs, key=probs.get),
            "echo": round(sum(x in seen for x in w) / len(w), 4) if w else 0.0,
            "repetition": round(style([text])["repetition"], 4)}


def converse(system, slugs: Sequence[str], **settings) -> Iterator[dict]:
    """Yield the conversation's turns as they are made (see the module's notes and ``Conversation``); ``log``: a
    JSONL transcript; ``steer="bias"``: each speaker's vocabulary logit bias (steering.py); ``names``: the system's
    adapter name of each character (default: the slug); ``scorer`` (fidelity.AttributionScorer): per-turn scores."""
    talk = Conversation(system, slugs, **settings)
    while not talk.done:
        yield talk.take(system.engine.run([talk.request()])[0])


def converse_many(system, conversations: Sequence[Conversation]) -> list[list[dict]]:
    """Run several conversations in lockstep: each step, one turn of every unfinished conversation, all in one
    batch of the engine (a mixed-adapter batch: each row with its speaker's adapter). Their turns, in order."""
    while True:
        live = [c for c in conversations if not c.done]
        if not live:
            return [c.made for c in conversations]
        for c, completion in zip(live, system.engine.run([c.request() for c in live])):
            c.take(completion)


FIRST_LINE_S = 5.0  # a transcript gets its settings line when it is created; an empty one this long is not one
TURN_KEYS = ("turn", "speaker", "adapter", "version", "text")
SETTINGS_KEYS = ("characters", "turns", "seed", "started")


def _checked(path: Path, n: int, line: str) -> dict:
    try:
        rec = json.loads(line)
    except ValueError:
        raise DataError(f"{path}: line {n} is not JSON: {line[:60]!r}") from None
    kind = rec.get("kind") if isinstance(rec, dict) else None
    want = {"settings": SETTINGS_KEYS, "turn": TURN_KEYS}.get(kind)
    if want is None or (n == 1) != (kind == "settings"):
        raise DataError(f"{path}: line {n} is not a transcript record (a settings line, then turns; "
                        "zephyra converse --log FILE writes one)")
    missing = [k for k in want if k not in rec]
    if missing:
        raise DataError(f"{path}: line {n} lacks {', '.join(missing)}")
    return rec


def watch(path: str | os.PathLike, *, follow: bool = True, idle: float = 0.5, stop_after: float | None = None
          ) -> Iterator[dict]:
    """The records of a transcript as they are appended (``follow``: keep waiting for more, until ``stop_after``
    seconds without a new line). A file that is not a transcript (empty past FIRST_LINE_S, a line that is not a
    settings or turn record) is a one-line DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such transcript (zephyra converse --log FILE writes one)")
    waited, n = 0.0, 0
    with open(path, encoding="utf-8") as f:
        while True:
            line = f.readline()
            if line.strip():
                waited, n = 0.0, n + 1
                yield _checked(path, n, line)
                continue
            if n == 0 and (not follow or waited >= FIRST_LINE_S):
                raise DataError(f"{path}: an empty transcript (no settings line)")
            if not follow or (stop_after is not None and waited >= stop_after):
                return
            time.sleep(idle)
            waited += idle
