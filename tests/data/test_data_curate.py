"""Curation steps: each filter drops what it should and keeps what it should; near-duplicates; PII."""

import pytest

from zephyra.data.config import CurateConfig, NearDedupConfig, NormaliseConfig, PIIConfig, QualityConfig
from zephyra.data.curate import (BlocklistFilter, ExactDedup, LanguageFilter, LengthFilter, NearDedup, Normalise,
                                 Pipeline, RepetitionFilter, ScrubPII, SymbolFilter, curate, jaccard)
from zephyra.data.filters import normalise_text, scrub_pii

PROSE = (
    "The old lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a lamp and a small "
    "notebook in which he wrote down the colour of the sea, the direction of the wind and the names of the "
    "ships that passed beneath the cliffs. Over forty years the notebooks filled three shelves in his kitchen, "
    "and when the harbour master finally asked to read them he found a patient history of the coast: storms "
    "that arrived without warning, summers when the fishing boats stayed in port, and one strange winter when "
    "the water froze so thick that children walked out to the rocks and waved back at their astonished parents."
)
OTHER = (
    "A recipe for bread begins with flour, water, salt and yeast, but the baker's real ingredient is time. "
    "Dough that rests overnight in a cool room develops a deeper flavour and a more open crumb than dough "
    "hurried through a warm afternoon, and experienced bakers learn to read the surface of the dough the way "
    "sailors read the sky, pressing it gently with a floured finger to see how slowly it springs back."
)


def rec(text, source="test"):
    return {"text": text, "domain": "general", "source": source, "licence": "CC0", "doc_id": text[:20]}


def run(steps, texts):
    pipe = Pipeline(steps)
    return [r["text"] for r in pipe.run(rec(t) for t in texts)], pipe.stats()


# --- near duplicates -------------------------------------------------------------------------------------------

def near_and_far():
    words = PROSE.split()
    near = " ".join(words[:60] + ["silently"] + words[61:])  # one word changed: 5 of ~110 shingles differ
    # keep the first 46% of the text, then something else entirely
    cut = int(len(words) * 0.46)
    far = " ".join(words[:cut] + OTHER.split()[:len(words) - cut])
    return near, far


def test_planted_near_duplicates_have_the_intended_similarity():
    near, far = near_and_far()
    assert 0.85 <= jaccard(PROSE, near) <= 0.95
    assert 0.25 <= jaccard(PROSE, far) <= 0.35


def test_near_duplicate_removed_and_distant_one_kept():
    near, far = near_and_far()
    kept, stats = run([NearDedup(NearDedupConfig(threshold=0.8))], [PROSE, near, far])
    assert kept == [PROSE, far]
    assert stats["dropped"]["near_dedup"] == 1


def test_near_dedup_threshold_is_configurable():
    near, far = near_and_far()
    kept, _ = run([NearDedup(NearDedupConfig(threshold=0.2))], [PROSE, near, far])
    assert kept == [PROSE]  # at 0.2 even the distant text counts as a duplicate


def test_full_curation_removes_the_near_duplicate():
    near, far = near_and_far()
    kept, stats = curate([rec(PROSE), rec(near), rec(far), rec(OTHER)], CurateConfig())
    assert [r["text"] for r in kept] == [PROSE, far, OTHER]
    assert stats["in"] == 4 and stats["out"] == 3
    assert stats["in"] - sum(stats["dropped"].values()) == stats["out"]


# --- filters ---------------------------------------------------------------------------------------------------

Q = QualityConfig()
FILTER_CASES = {
    "length": (LengthFilter(Q), "Too short.", OTHER),
    "symbols": (SymbolFilter(Q), "x = {a[0]: b|c} <=> ~d ^ e @@ #f $g %h & *i", OTHER),
    "repetition": (RepetitionFilter(Q), "buy now " * 40, PROSE),
    "language": (LanguageFilter(Q), "Lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
                                    "tempor incididunt ut labore et dolore magna aliqua", OTHER),
    "blocklist": (BlocklistFilter(Q), OTHER + " What a fucking mess.", OTHER),
}


@pytest.mark.parametrize("name", sorted(FILTER_CASES))
def test_each_filter_drops_bad_and_keeps_good(name):
    step, bad, good = FILTER_CASES[name]
    kept, stats = run([step], [bad, good])
    assert kept == [good]
    assert stats["dropped"] == {name: 1}


def test_repetition_counts_duplicate_lines():
    lines = "\n".join(["Click here to subscribe to our newsletter today"] * 6 + [OTHER])
    kept, _ = run([RepetitionFilter(Q)], [lines])
    assert kept == []


def test_archaic_english_passes_the_language_check():
    kjv = ("And God said, Let there be light: and there was light. And God saw the light, that it was good: and "
           "God divided the light from the darkness.")
    assert run([LanguageFilter(Q)], [kjv])[0] == [kjv]


def test_blocklist_matches_whole_words_only():
    text = OTHER + " The scunthorpe problem: shittah wood in Exodus."
    assert run([BlocklistFilter(Q)], [text])[0] == [text]


def test_blocklist_file_adds_words(tmp_path):
    extra = tmp_path / "block.txt"
    extra.write_text("# comment\nflour\n")
    kept, _ = run([BlocklistFilter(QualityConfig(blocklist_file=str(extra)))], [OTHER, PROSE])
    assert kept == [PROSE]


def test_exact_dedup_ignores_case_and_spacing():
    kept, stats = run([ExactDedup()], [OTHER, OTHER.upper().replace(" ", "  "), PROSE])
    assert kept == [OTHER, PROSE]
    assert stats["dropped"]["exact_dedup"] == 1


# --- normalisation ---------------------------------------------------------------------------------------------

def test_normalise_defaults_fold_unicode_and_whitespace_only():
    text = "The \ufb01rst   line\t here.  \r\n\r\n\r\n\r\n    indented  code\u200b"
    assert normalise_text(text, NormaliseConfig()) == "The first line here.\n\n    indented code"


def test_normalise_options():
    cfg = NormaliseConfig(lowercase=True, strip_punctuation=True)
    assert normalise_text("Hello, World! (Again.)", cfg) == "hello world again"


def test_text_that_normalises_to_nothing_is_dropped():
    kept, stats = run([Normalise(NormaliseConfig())], ["  \u200b \n\n ", "ok"])
    assert kept == ["ok"]
    assert stats["dropped"]["normalise"] == 1 and stats["modified"] == {}


# --- PII -------------------------------------------------------------------------------------------------------

def test_pii_is_scrubbed():
    text = ("Mail jane.doe+x@example.co.uk or call +44 20 7946 0958 or (555) 123-4567. Server 192.168.1.20, "
            "v6 2001:db8::8a2e:370:7334, card 4111 1111 1111 1111.")
    out = scrub_pii(text, PIIConfig())
    assert out == ("Mail [EMAIL] or call [PHONE] or [PHONE]. Server [IP], v6 [IP], card [CARD].")


def test_pii_leaves_lookalikes_alone():
    text = ("On 1994-11-07 Python 3.11.2 shipped; Genesis 1:3 says light; a[1::2] slices; "
            "the number 1234 5678 9012 3456 fails the Luhn check; the year 1066.")
    assert scrub_pii(text, PIIConfig()) == text


def test_pii_step_counts_modified_records():
    kept, stats = run([ScrubPII(PIIConfig())], ["write to a@b.org", "nothing here"])
    assert kept == ["write to [EMAIL]", "nothing here"]
    assert stats["modified"] == {"pii": 1}


def test_stats_are_kept_per_source():
    pipe = Pipeline([LengthFilter(Q)])
    list(pipe.run([rec("short", "a"), rec(OTHER, "a"), rec(PROSE, "b")]))
    by = pipe.stats()["by_source"]
    assert (by["a"]["in"], by["a"]["out"], by["a"]["dropped"]) == (2, 1, {"length": 1})
    assert by["b"]["bytes_out"] == len(PROSE.encode())
