"""The plays parsed by speaker (apps/shakespeare/plays.py): the counts the issue measured, every spoken word kept
(directions apart, also inside speeches and inside lines), speakers by name, line numbers, addressees, the
stage checks; and the markup cases on a small play of our own."""

import re

import pytest

from zephyra.apps.shakespeare.plays import (
    load_play, parse_play, play_checks, play_files, roman, speaker_name, speaker_table, speeches,
)
from zephyra.errors import DataError


def _raw_words(path):
    """Words of the play's spoken lines, counted without the parser: every line that is not a heading, a speaker
    label or a stage direction (a wrapped one included), with inline directions cut out."""
    words, pending = 0, False
    for line in path.read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if not s or s.startswith("#") or re.match(r"^\*\*(.+?)\*\*$", s):
            continue
        if pending or s.startswith("_"):
            pending = not s.endswith("_")
            continue
        words += len(re.sub(r"_\\\[.*?\]_", " ", s).split())
    return words


@pytest.mark.parametrize("play,scenes,n", [("hamlet", 20, 1138), ("macbeth", 28, 649)])
def test_the_plays_counts_and_every_spoken_word(play, scenes, n):
    parsed = load_play(play)
    checks = play_checks(parsed)
    assert checks["scenes"] == scenes and checks["speeches"] == n  # Macbeth heads its first scene with "##"
    assert checks["words"] == _raw_words(play_files()[play])  # nothing lost after an aside or an exit
    assert checks["empty_speeches"] == 0 and checks["bracket_text_left"] == 0
    all_speeches = speeches(parsed)
    assert not any("\\[" in s.text or "_" in s.text for s in all_speeches)  # no markup left in the words
    for sc in parsed:
        lines = [s.line for s in sc.speeches]
        assert lines == sorted(lines) and lines[0] == 1  # line numbers run through the scene
        assert all(s.scene == sc.scene and s.act == sc.act for s in sc.speeches)  # no speech across scenes


def test_speakers_by_name_and_what_the_issue_measured():
    hamlet = load_play("hamlet")
    table = {r["speaker"]: r for r in speaker_table(hamlet)}
    assert table["Hamlet"]["words"] == 11535 and table["Ophelia"]["speeches"] == 58
    assert {"Claudius", "Polonius", "Gertrude", "Horatio"} <= set(table)  # "KING CLAUDIUS", "LORD POLONIUS"
    assert speaker_name("LADY MACBETH") == "Lady Macbeth" and speaker_name("QUEEN GERTRUDE") == "Gertrude"
    kin = next(s for s in speeches(hamlet) if s.text.startswith("A little more than kin"))
    assert kin.speaker == "Hamlet" and kin.directions == ["Aside"] and (kin.act, kin.scene) == (1, 2)
    to = [s for s in speeches(hamlet) if any(d.startswith("To ") for d in s.directions)]
    assert to and all(s.addressee for s in to)
    assert speaker_table(load_play("macbeth"))[1]["speaker"] == "Lady Macbeth"
    assert roman("XIV") == 14 and roman("iv") == 4


def test_a_play_that_is_not_installed_is_one_line():
    with pytest.raises(DataError, match="no play 'hamlett'.*known:.*hamlet"):
        load_play("hamlett")


PLAY = """# A Test

## ACT I

## SCENE I. A hall.

_Enter ANNE, BEN,
and CLARA_

**ANNE**
Good morrow, Ben, how fare you?

**BEN**
Well, Anne.
_\\[Aside]_
She knows not.
_Exit ANNE_
I will follow her.

**CLARA**
And _\\[ ]_ I stay.

_Exit_

**ANNE**
I am back without an entrance.

### SCENE II. Outside.

**BEN**
Here.
"""


def test_the_markup_cases(tmp_path):
    path = tmp_path / "test.md"
    path.write_text(PLAY)
    (s1, s2) = list(parse_play(path))
    assert (s1.act, s1.scene, s2.scene) == (1, 1, 2) and s1.location == "A hall."  # "##" or "###" SCENE
    anne, ben, clara, again = s1.speeches
    assert ben.text == "Well, Anne.\nShe knows not.\nI will follow her."  # words after an aside and an exit
    assert ben.directions == ["Aside", "Exit ANNE"] and ben.line == 2
    assert clara.text == "And I stay." and clara.directions == []  # an empty inline bracket
    assert s1.directions[0] == (0, "Enter ANNE, BEN, and CLARA")  # wrapped over two lines
    assert again.off_stage and not anne.off_stage  # Anne left by "Exit ANNE" and speaks again
    assert s2.speeches[0].speaker == "Ben" and s2.speeches[0].line == 1
