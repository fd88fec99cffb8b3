"""``zephyra mcp`` (apps/tutor/mcp_server.py): the tutor's tools, tutor_ask, resources and prompt through the
official SDK's client, in process and once over stdio as a subprocess; sessions stored on disk continue across
connections."""

import json
import os
import sys
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

sys.path[:0] = [str(Path(__file__).parents[1] / "router")]
from router_helpers import make_model, make_tokenizer  # noqa: E402

from zephyra.apps.tutor.mcp_server import SessionStore, build_server  # noqa: E402


def _text(result) -> str:
    return result.content[0].text


def test_tools_resources_prompt_and_bad_arguments(tmp_path):
    server = build_server(root=tmp_path / "tutor", base=tmp_path / "nobase", sessions=tmp_path / "sessions")

    async def main():
        async with Client(server) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert set(tools) == {"calculator", "check_answer", "convert_units", "retrieve", "tutor_ask"}
            assert tools["calculator"].input_schema["required"] == ["expression"]  # the Toolbox's own schema
            assert "session" in tools["tutor_ask"].input_schema["properties"]
            r = await c.call_tool("calculator", {"expression": "(3 + 4) * 2"})
            assert not r.is_error and _text(r) == "14"
            r = await c.call_tool("check_answer", {"answer": "0.5", "expected": "1/2"})
            assert json.loads(_text(r)) == {"correct": True, "compared": "numeric"}
            for args in ({"expr": "1"}, {"expression": "2 +"}, {"expression": "1/0"}):
                bad = await c.call_tool("calculator", args)
                assert bad.is_error and "calculator" in _text(bad) and "\n" not in _text(bad), _text(bad)
            bad = await c.call_tool("convert_units", {"value": 1, "from_unit": "m", "to_unit": "parsec"})
            assert bad.is_error and "to_unit" in _text(bad)
            missing = await c.call_tool("tutor_ask", {"message": "hi"})  # no base model: a one-line error
            assert missing.is_error and "no model there" in _text(missing)
            bad = await c.call_tool("tutor_ask", {"message": "hi", "session": "../x"})
            assert bad.is_error and "session must be" in _text(bad)

            uris = {str(r.uri) for r in (await c.list_resources()).resources}
            assert uris == {"tutor://subjects", "tutor://subjects/math", "tutor://subjects/science",
                            "tutor://subjects/reading"}
            templates = [t.uri_template for t in (await c.list_resource_templates()).resource_templates]
            assert templates == ["tutor://sessions/{session}"]
            subjects = json.loads((await c.read_resource("tutor://subjects")).contents[0].text)
            assert [s["subject"] for s in subjects] == ["math", "science", "reading"]
            assert subjects[0]["indexed"] is False and subjects[0]["chunks"] == 0

            prompts = [p.name for p in (await c.list_prompts()).prompts]
            assert prompts == ["socratic_tutor"]
            p = await c.get_prompt("socratic_tutor", {"subject": "math"})
            assert "Never give the learner the final answer" in p.messages[0].content.text

    anyio.run(main)


def test_subject_summary_reads_the_manifest(tmp_path):
    from zephyra.apps.tutor.mcp_server import subject_summary

    idx = tmp_path / "index" / "math"
    idx.mkdir(parents=True)
    (idx / "manifest.json").write_text(json.dumps({"metrics": {"chunks": 3}, "embedding": {"dense": False}}))
    (idx / "chunks.jsonl").write_text("".join(json.dumps({"id": str(i), "source": s}) + "\n"
                                              for i, s in enumerate(["openstax", "openstax", "generated"])))
    out = subject_summary(tmp_path, "math")
    assert out["chunks"] == 3 and out["sources"] == {"openstax": 2, "generated": 1} and out["indexed"]


def test_tutor_ask_and_a_session_that_continues_across_connections(tmp_path):
    from zephyra.apps.tutor.tutor import Tutor

    tok = make_tokenizer()
    make_model(tok).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    sessions = tmp_path / "sessions"
    server = build_server(root=tmp_path / "tutor", base=tmp_path / "base", sessions=sessions,
                          tutor_factory=lambda: Tutor(tmp_path / "base", tmp_path / "tutor"))
    progress = []

    async def on_progress(done, total, message):
        progress.append((done, total, message))

    async def main():
        async with Client(server) as c:
            r = await c.call_tool("tutor_ask", {"message": "What is 7 × 8 + 2?", "session": "s1"},
                                  progress_callback=on_progress)
            assert not r.is_error, _text(r)
            out = r.structured_content
            assert out["subject"] == "math" and out["session"] == "s1" and out["turn"] == 1
            assert "58" not in out["text"] and "?" in out["text"]  # a hint and a question, not the answer
            assert {"text", "subject", "adapter", "sources"} <= set(out)
            fresh = await c.call_tool("tutor_ask", {"message": "What is 2 + 2?"})
            assert not fresh.is_error and fresh.structured_content["turn"] == 1  # a new session id, made up
        async with Client(server) as c:  # a second client, the same session: the problem and turns carry on
            r = await c.call_tool("tutor_ask", {"message": "I multiply 7 by 8 first", "session": "s1"})
            assert not r.is_error and r.structured_content["turn"] == 2 and r.structured_content["subject"] == "math"
        other = build_server(root=tmp_path / "tutor", base=tmp_path / "nobase", sessions=sessions)
        async with Client(other) as c:  # another server process on the same sessions: the history is there
            h = json.loads((await c.read_resource("tutor://sessions/s1")).contents[0].text)
            assert [t["message"] for t in h["turns"]] == ["What is 7 × 8 + 2?", "I multiply 7 by 8 first"]
            assert h["turns"][1]["state"]["problem"] == "What is 7 × 8 + 2?"

    anyio.run(main)
    store = SessionStore(sessions)
    assert len(store.turns("s1")) == 2 and len(list(sessions.glob("*.jsonl"))) == 2
    assert progress and progress[-1][0] == 2 and "session s1" in progress[-1][2], progress  # it talked back


def test_stdio_subprocess_lists_tools_and_calculates(tmp_path):
    (tmp_path / "tutor").mkdir()  # a tutor root without indexes yet; no base: the tools work, tutor_ask refuses
    params = StdioServerParameters(command=sys.executable, args=[
        "-m", "zephyra", "mcp", "--transport", "stdio", "--root", str(tmp_path / "tutor"), "--base",
        str(tmp_path / "nobase"), "--sessions", str(tmp_path / "sessions")], env={**os.environ, "HF_HUB_OFFLINE": "1"})

    async def main():
        with anyio.fail_after(60):
            async with Client(params) as c:
                names = [t.name for t in (await c.list_tools()).tools]
                assert "calculator" in names and "tutor_ask" in names
                r = await c.call_tool("calculator", {"expression": "12 * 7"})
                assert not r.is_error and _text(r) == "84"

    anyio.run(main)
