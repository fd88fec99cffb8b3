"""Shared test set-up: nothing may reach a hub; torch runs single-threaded and seeded."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["ZEPHYRA_GUARD_ENCODER"] = ""  # the shipped guard alone, whatever runs/ holds (tests that want it set it)
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI runs torch (zephyra.runtime), before torch loads

import shutil  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# Debian's chromium (scripts/setup.sh installs it), driven by Playwright: the browser tests' one launcher
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# tiny test models gain nothing from a second thread, and with other work on the machine an OpenMP barrier
# per op turns milliseconds into tenths of a second
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def browser():
    """A headless chromium for a module's page tests (they skip when there is none)."""
    if CHROMIUM is None:
        pytest.skip("no chromium (scripts/setup.sh installs Debian's)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()
