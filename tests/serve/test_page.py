"""The chat page in a real headless browser (Debian's chromium, driven by Playwright): it loads the models, sends a
message, shows the answer as streamed chunks arrive with the adapter@version that gave it, and shows the registry's
log."""

import shutil

import pytest
from serve_helpers import running

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/setup.sh installs Debian's)")


# the browser: tests/conftest.py's fixture (Debian's chromium through Playwright)


@pytest.fixture(scope="module")
def page_url(system_dirs, tmp_path_factory):
    from zephyra.registry import Registry
    from zephyra.resolve.system import load_system
    from zephyra.serve.app import create_app
    from zephyra.serve.deploy import registry_adapters

    reg = Registry(tmp_path_factory.mktemp("page") / "registry")
    for name in ("python", "shakespeare", "chemistry"):
        reg.push(system_dirs["adapters"] / name, name, why="for the page test")
    dirs, canaries = registry_adapters(reg)
    system = load_system(system_dirs["base"], None, system_dirs["router"], adapter_dirs=dirs)
    with running(create_app(system, canaries=canaries, registry=reg, max_tokens=24)) as url:
        yield url


def _greedy_stream(url, prompt):
    """(content chunks, adapter) of the server's own greedy stream for ``prompt``, through the official client."""
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)
    stream = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": prompt}],
                                            stream=True, temperature=0)
    pieces, adapter = 0, None
    for chunk in stream:
        extra = getattr(chunk, "zephyra", None) or (chunk.model_extra or {}).get("zephyra")
        adapter = (extra or {}).get("adapter", adapter)
        pieces += bool(chunk.choices and chunk.choices[0].delta.content)
    return pieces, adapter


def test_the_page_streams_an_answer_and_says_who_gave_it(page_url, browser, tmp_path):
    # The test model is untrained, so whether a greedy answer ends at once depends on the CPU's arithmetic: take
    # the first prompt whose answer streams in several pieces here, and hold the page to exactly that stream.
    prompts = ["Tell me about Polonius.", "Who is Hamlet?", "Tell me about Ophelia.", "Who is Macbeth?"]
    streams = {p: _greedy_stream(page_url, p) for p in prompts}
    prompt = next((p for p in prompts if streams[p][0] >= 2), None)
    assert prompt, streams
    pieces, adapter = streams[prompt]
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    seen = []  # the chunk counts the page showed, in order, while the answer arrived
    page.expose_function("seen", lambda n: seen.append(n))
    page.add_init_script("""new MutationObserver(() => window.seen && document.body &&
        window.seen(Number(document.body.dataset.chunks || 0))).observe(document, {attributes: true, subtree: true})""")
    page.goto(page_url + "/?temperature=0")  # greedy: the same answer as above
    page.wait_for_selector('#model option[value="auto"]', state="attached")
    # a tiny model streams its 24 pieces within a few milliseconds, which the browser may draw as one frame: the
    # answer is read over a slow link (DevTools' throttling, about 2 kB/s), so its pieces arrive apart, as on a
    # real network with a real model
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 20, "downloadThroughput": 2048,
                                                  "uploadThroughput": -1})
    page.select_option("#model", "auto")
    page.fill("#prompt", prompt)
    page.evaluate("document.getElementById('ask').requestSubmit()")
    page.wait_for_selector('body[data-done="1"]', state="attached", timeout=60_000)
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": -1})
    assert int(page.evaluate("document.body.dataset.chunks")) == pieces >= 2  # every streamed piece was shown
    assert len(set(seen) - {0}) >= 2, seen  # ... as it came, not all at the end
    label = page.locator("div.label").last.inner_text()
    assert label.startswith(adapter + "@") and "confidence" in label
    page.wait_for_selector('#model option[value="python"]', state="attached")  # the adapter picker, from /v1/models
    page.wait_for_function("document.getElementById('deploylog').rows.length > 0")
    log = page.locator("#deploylog").inner_text()
    assert "push" in log and "for the page test" not in page.content()  # the deployment log, without the reasons
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page.close()
