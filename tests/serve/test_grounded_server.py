"""A grounded adapter behind the server: the answer quotes its best passage with the sources in the ``zephyra``
object, streamed or not, and says it does not know when retrieval finds nothing relevant."""

import json
import sys
from pathlib import Path

import pytest
from serve_helpers import running

sys.path[:0] = [str(Path(__file__).parents[1] / "cli"), str(Path(__file__).parents[1] / "retrieval")]
from test_retrieval import CHUNKS  # noqa: E402
from test_route import build_system  # noqa: E402

from zephyra.retrieval.index import build_index  # noqa: E402


@pytest.fixture(scope="module")
def grounded_url(tmp_path_factory):
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app

    index = build_index(CHUNKS, tmp_path_factory.mktemp("index") / "geography", domain="geography", encoder=None,
                        log=lambda s: None)
    dirs = build_system(tmp_path_factory.mktemp("system"))
    manifest = dirs["adapters"] / "geography" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["config"]["run"]["grounding"] = {"index": str(index.path), "k": 2, "mode": "sparse", "passage_tokens": 12,
                                       "min_score": 0.1}
    manifest.write_text(json.dumps(m))
    system = load_system(dirs["base"], dirs["adapters"], dirs["router"])
    with running(create_app(system, max_tokens=16)) as url:
        yield url


def test_a_grounded_answer_quotes_its_source_streamed_or_not(grounded_url):
    from openai import OpenAI

    client = OpenAI(base_url=grounded_url + "/v1", api_key="none", max_retries=0)
    ask = [{"role": "user", "content": "What is the capital of Peru?"}]
    r = client.chat.completions.create(model="geography", messages=ask, max_tokens=8)
    z = r.model_extra["zephyra"]
    assert z["adapter"] == "geography" and z["sources"][0]["id"] == "country:PE"
    assert r.choices[0].message.content == f"{z['sources'][0]['text']} [1]"
    chunks = list(client.chat.completions.create(model="geography", messages=ask, max_tokens=8, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content
    assert chunks[0].model_extra["zephyra"]["sources"] == z["sources"]
    nothing = client.chat.completions.create(model="geography", messages=[{"role": "user", "content": "zzz qqq"}])
    assert nothing.choices[0].message.content.startswith("I do not know")
    assert nothing.model_extra["zephyra"]["adapter"] == "base" and nothing.model_extra["zephyra"]["note"]
