"""Privacy of user data (issue 15, item 3 without the memorisation test): PII scrubbed from transcripts, feedback,
logs and metrics labels; retention by age and count; a purge, over the API and from the command line, after
which no store holds the user's id or text (every store grepped), while another user's data stays.

A real loopback server on a tiny system (a Zephyra and six random LoRA adapters, no router) with a feedback log
and the Shakespeare viewer mounted on two of the adapters (its transcripts are real: the viewer writes them)."""

import json
import logging
import sys
import time
from pathlib import Path

import httpx
import pytest

TESTS = Path(__file__).parents[1]
sys.path[:0] = [str(TESTS / d) for d in ("router", "resolve", "serve")]
from serve_helpers import running  # noqa: E402

SRC = TESTS.parent / "src" / "zephyra"
ADMIN, USER_KEY = "sk-admin-x", "sk-user-y"
ALICE, BOB = "alice-7f3a", "bob-91c2"
# each user's own text: a marker only they sent, and PII
TEXT = {ALICE: ("zanzibar-quokka-17", "alice.smith@example.com", "+44 20 7946 0958"),
        BOB: ("mongoose-trellis-42", "bob@example.org", "4111 1111 1111 1111")}


class _Scorer:  # the viewer's per-turn scores need a fitted classifier over the plays: not this test's subject
    def probabilities(self, text):
        return {"hamlet": 0.5, "ophelia": 0.5}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(url, server, viewer, root): the server, its feedback log and the viewer's conversations under root."""
    import torch
    from resolve_helpers import save_adapters
    from router_helpers import make_model, make_tokenizer

    from zephyra.apps.shakespeare.viewer import add_routes
    from zephyra.data import DOMAINS
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app
    from zephyra.serve.auth import KeyRing, hash_key
    from zephyra.serve.privacy import RecordLog, Retention, UserData

    root = tmp_path_factory.mktemp("privacy")
    tok = make_tokenizer()
    torch.manual_seed(0)
    model = make_model(tok)
    model.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    save_adapters(model, root / "adapters", names=DOMAINS)
    system = load_system(root / "base", root / "adapters", None)
    (root / "keys.txt").write_text(f"{hash_key(ADMIN)} name=ops scopes=admin,generate\n"
                                   f"{hash_key(USER_KEY)} name=app scopes=generate\n")
    data = UserData(Retention())
    data.feedback = data.register(RecordLog(root / "serve" / "feedback.jsonl", "feedback log"))
    viewers = []

    def viewer(app, server):
        viewers.append(add_routes(app, server, names={"hamlet": "shakespeare", "ophelia": "python"},
                                  conversations=root / "conversations"))
        viewers[0]._scorer, viewers[0]._warming = _Scorer(), True

    app = create_app(system, keyring=KeyRing.from_args(key_file=root / "keys.txt"), privacy=data, max_tokens=8,
                     extensions=[viewer])
    with running(app) as url:
        yield url, app.state.server, viewers[0], root


def _post(url, path, body, key=USER_KEY):
    return httpx.post(url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _use(url, viewer, user):
    """What a user leaves behind: two answers (one rated, with a comment) and a conversation with a scene."""
    marker, email, other = TEXT[user]
    rids = []
    for i in range(2):
        r = _post(url, "/v1/chat/completions", {"model": "chemistry", "user": user, "max_tokens": 2, "messages": [
            {"role": "user", "content": f"{marker} my email is {email}, {other} ({i})"}]})
        assert r.status_code == 200, r.text
        rids.append(r.headers["x-request-id"])
    r = _post(url, "/v1/feedback", {"request_id": rids[0], "rating": "down",
                                    "comment": f"{marker}: wrong! write to {email} or {other}"})
    assert r.status_code == 200, r.text
    r = _post(url, "/v1/shakespeare/conversations", {"characters": ["hamlet", "ophelia"], "turns": 2, "max_tokens": 4,
                                                     "scene": f"{marker} at 221B Baker Street; mail {email}",
                                                     "user": user})
    assert r.status_code == 202, r.text
    cid = r.json()["id"]
    deadline = time.monotonic() + 60
    while cid in viewer.running:
        assert time.monotonic() < deadline, "the conversation never ended"
        time.sleep(0.05)
    return rids, cid


def _everything(root: Path, server, viewer) -> str:
    """Every store's contents as one text: the files under root (but the model's), and the memory stores."""
    files = [p for p in root.rglob("*") if p.is_file() and "base" not in p.parts and "adapters" not in p.parts]
    text = "\n".join(p.read_text(errors="replace") for p in files)
    return text + json.dumps([list(server._recent.items()), list(server._users.items())])


@pytest.fixture(scope="module")
def used(world):
    url, server, viewer, root = world
    return {u: _use(url, viewer, u) for u in (ALICE, BOB)}


# --- scrubbing -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, tag", [
    ("mail alice.smith@example.com now", "[EMAIL]"), ("call +44 20 7946 0958", "[PHONE]"),
    ("call (555) 123-4567", "[PHONE]"), ("card 4111 1111 1111 1111", "[CARD]"), ("from 192.168.1.20", "[IP]"),
    ("from 2001:db8:85a3::8a2e:370:7334", "[IP]"), ("at 221B Baker Street, London", "[ADDRESS]"),
    ("at 1600 Pennsylvania Avenue", "[ADDRESS]"), ("my name is Alice Jones", "[NAME]"),
    ("ask Dr. Watson", "[NAME]"), ("Regards, Robert", "[NAME]")])
def test_user_pii_is_scrubbed(text, tag):
    from zephyra.serve.privacy import scrub

    out = scrub(text)
    assert tag in out and out != text


@pytest.mark.parametrize("text", ["In 1599 Shakespeare wrote Hamlet.", "What does zip() do in Python 3.11?",
                                  "The order was 1994-11-07 and it cost 1234 5678 9012 3456.",  # no Luhn
                                  "Who built the ark?", "x = a[1::2]"])
def test_ordinary_text_is_left_alone(text):
    from zephyra.serve.privacy import scrub

    assert scrub(text) == text


def test_log_records_are_scrubbed_the_access_logs_address_too(caplog):
    from zephyra.serve.privacy import install_log_scrubber

    install_log_scrubber(["zephyra.test-privacy"])
    log = logging.getLogger("zephyra.test-privacy")
    with caplog.at_level(logging.INFO, logger="zephyra.test-privacy"):
        log.info('%s - "%s %s HTTP/%s" %d', "10.1.2.3:54321", "GET", "/v1/x?mail=a@b.org", "1.1", 200)
        log.info("user said call +1 202 456 1111")
    text = caplog.text
    assert "10.1.2.3" not in text and "a@b.org" not in text and "456 1111" not in text
    assert "[IP]:54321" in text and "[EMAIL]" in text and "[PHONE]" in text


def test_transcripts_and_feedback_are_stored_scrubbed(world, used):
    url, server, viewer, root = world
    feedback = (root / "serve" / "feedback.jsonl").read_text()
    transcripts = "".join(p.read_text() for p in (root / "conversations").glob("*.jsonl"))
    for user, (marker, email, other) in TEXT.items():
        assert marker in feedback and marker in transcripts  # the text is kept ...
        assert email not in feedback and email not in transcripts and other not in feedback  # ... its PII is not
    assert "Baker Street" not in transcripts and "[ADDRESS]" in transcripts and "[EMAIL]" in feedback


def test_no_prompt_text_or_user_becomes_a_metrics_label(world, used):
    url, server, viewer, root = world
    _post(url, "/v1/chat/completions", {"model": "zanzibar-quokka-17", "messages": [
        {"role": "user", "content": "hi"}], "user": ALICE})  # an unknown model named by the user's text: 404
    metrics = httpx.get(url + "/metrics").text
    assert "zephyra_requests_total" in metrics and 'adapter="chemistry"' in metrics  # it counted them
    for user, words in TEXT.items():
        assert user not in metrics and not any(w in metrics for w in words)


def test_no_labels_call_in_the_source_takes_user_text():
    """Every ``.labels(...)`` argument in the source is a plain name or attribute, never one that holds a
    prompt, a message, a user or a comment."""
    import ast

    suspicious = {"prompt", "messages", "message", "content", "text", "user", "comment", "scene", "body", "query"}
    bad = []
    files = [p for p in SRC.rglob("*.py") if ".labels(" in p.read_text(encoding="utf-8")]
    assert any(p.name == "app.py" for p in files)  # the server's own calls are among them
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "labels":
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    names = {n.id for n in ast.walk(arg) if isinstance(n, ast.Name)} | \
                            {n.attr for n in ast.walk(arg) if isinstance(n, ast.Attribute)}
                    if names & suspicious:
                        bad.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not bad, bad


# --- the purge ------------------------------------------------------------------------------------------------------

def test_the_api_purge_leaves_nothing_of_the_user_and_all_of_the_others(world, used):
    url, server, viewer, root = world
    before = _everything(root, server, viewer)
    for user, (marker, _, _) in TEXT.items():
        assert user in before and marker in before  # every store held both users
    assert _post(url, "/v1/admin/purge", {"user": ALICE}).status_code == 403  # the app's key may not
    old_inode = (root / "serve" / "feedback.jsonl").stat().st_ino
    r = _post(url, "/v1/admin/purge", {"user": ALICE}, key=ADMIN)
    assert r.status_code == 200, r.text
    removed = r.json()["removed"]
    assert removed["feedback log"] == 1 and removed[f"conversations {root / 'conversations'}"] == 1
    assert removed["recent answers (request -> adapter, version, user)"] == 2
    after = _everything(root, server, viewer)
    assert ALICE not in after and not any(w in after for w in TEXT[ALICE]), "something of alice remains"
    assert BOB in after and TEXT[BOB][0] in after  # bob's data is untouched
    assert (root / "serve" / "feedback.jsonl").stat().st_ino != old_inode  # rewritten by rename, not in place
    rid, cid = used[ALICE][0][1], used[ALICE][1]
    assert _post(url, "/v1/feedback", {"request_id": rid, "rating": "up"}).status_code == 404  # forgotten
    assert httpx.get(url + f"/v1/shakespeare/conversations/{cid}",
                     headers={"Authorization": f"Bearer {USER_KEY}"}).status_code == 404
    again = _post(url, "/v1/admin/purge", {"user": ALICE}, key=ADMIN).json()
    assert again["total"] == 0  # nothing left to remove


def test_the_cli_purge_walks_the_documented_layout(world, used, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from zephyra.cli import app

    url, server, viewer, root = world
    copy = tmp_path / "copy"
    shutil.copytree(root / "conversations", copy / "conversations")
    shutil.copytree(root / "serve", copy / "serve")
    (copy / "other.jsonl").write_text(json.dumps({"user": BOB, "note": TEXT[BOB][0]}) + "\n"
                                      + json.dumps({"user": "carol", "note": "stays"}) + "\n")
    result = CliRunner().invoke(app, ["privacy", "purge", "--user", BOB, "--root", str(copy), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["total"] >= 3
    left = "".join(p.read_text() for p in copy.rglob("*") if p.is_file())
    assert BOB not in left and not any(w in left for w in TEXT[BOB]) and "carol" in left
    bad = CliRunner().invoke(app, ["privacy", "purge", "--user", "../bob", "--root", str(copy)])
    assert bad.exit_code == 2 and "error:" in bad.output and len(bad.output.strip().splitlines()) == 1
    missing = CliRunner().invoke(app, ["privacy", "purge", "--user", BOB, "--root", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such" in missing.output


def test_the_tutors_sessions_are_purged_per_user():
    from zephyra.apps.tutor.backend import Backend
    from zephyra.serve.privacy import MemoryStore, UserData

    backend = Backend(tutor=None)
    for sid, user in (("s1", ALICE), ("s2", BOB), ("s3", ALICE)):
        s = backend.session(sid)
        s.user, s.said = user, [("Learner", TEXT[user][0])]
    data = UserData()
    data.register(MemoryStore("tutor sessions", backend.forget))
    assert data.purge(ALICE) == {"tutor sessions": 2}
    assert list(backend.sessions) == ["s2"]


# --- retention ------------------------------------------------------------------------------------------------------

def test_retention_keeps_the_newest_transcripts_and_drops_old_records(tmp_path):
    import os

    from zephyra.serve.privacy import RecordLog, Retention, TranscriptDir, UserData

    d = tmp_path / "conversations"
    d.mkdir()
    now = time.time()
    for i in range(5):  # c0 oldest ... c4 newest
        p = d / f"c{i}.jsonl"
        p.write_text(json.dumps({"kind": "settings", "scene": f"s{i}"}) + "\n")
        os.utime(p, (now - 86400 * (10 - i), now - 86400 * (10 - i)))
    TranscriptDir(d).own("c0", ALICE)
    log = RecordLog(tmp_path / "feedback.jsonl")
    log.path.write_text(json.dumps({"time": now - 40 * 86400, "user": ALICE}) + "\n"
                        + json.dumps({"time": now, "user": BOB}) + "\n")
    data = UserData(Retention(days=30, count=3))
    data.register(TranscriptDir(d, "t"))
    data.register(log)
    assert data.retain() == {"t": 2, f"records {log.path}": 1}
    assert sorted(p.stem for p in d.glob("c*.jsonl")) == ["c2", "c3", "c4"]
    assert ALICE not in (d / "owners.jsonl").read_text()  # c0's owner line went with it
    assert ALICE not in log.path.read_text() and BOB in log.path.read_text()
    data = UserData(Retention(days=6.5))  # c2 (8 days old) and c3 (7) go
    data.register(TranscriptDir(d, "t"))
    assert data.retain() == {"t": 2} and [p.stem for p in d.glob("c*.jsonl")] == ["c4"]
    with pytest.raises(Exception, match="retention"):
        Retention(days=0)
