"""The chat page in a real headless browser (Debian's chromium): it loads the models, sends a message, shows the
answer as streamed chunks arrive with the adapter@version that gave it, and shows the registry's log."""

import re
import shutil
import subprocess

import pytest
from serve_helpers import running

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/setup.sh installs Debian's)")


def _chromium(*args, timeout=90):
    return subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--no-first-run", "--virtual-time-budget=20000", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


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


def test_the_page_streams_an_answer_and_says_who_gave_it(page_url, tmp_path):
    url = page_url + "/?q=Tell%20me%20about%20Polonius.&model=auto&temperature=0"  # greedy: the same answer every run
    dom = _chromium("--dump-dom", url).stdout
    found = re.search(r'data-chunks="(\d+)"', dom)
    assert found, dom[-2000:]
    chunks = int(found.group(1))
    assert chunks >= 2  # the answer arrived in pieces, as streamed
    label = re.search(r'<div class="label">([^<]*)</div>', dom).group(1)
    assert label.startswith("shakespeare@") and "confidence" in label
    assert '<option value="python">python</option>' in dom  # the adapter picker, from /v1/models
    assert "push" in dom and "for the page test" not in dom  # the deployment log, without the reasons
    shot = tmp_path / "page.png"
    _chromium("--window-size=1280,720", f"--screenshot={shot}", url)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
