"""The tutor's toy vision path on a tiny base: toy data, training, the artifact, loading, answering, bad input.
(The accuracy goal is the benchmark's, docs/tutor.md: `zephyra tutor vision-train`.)"""

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

sys.path[:0] = [str(Path(__file__).parents[1] / "router")]

from router_helpers import make_model  # noqa: E402

from zephyra.apps.tutor import vision as V  # noqa: E402
from zephyra.errors import ArtifactError, DataError, RequestError  # noqa: E402

SMALL = {"train": 8, "validation": 4, "test": 4}


def _tokenizer():
    from zephyra.tokenizer import build_tokenizer

    corpus = list(V.QUESTIONS.values()) * 5 + [a for c in V.CLASSES.values() for a in c] * 5
    return build_tokenizer(corpus, vocab_size=400, min_frequency=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("vision")
    tok = _tokenizer()
    model = make_model(tok, separable=False)
    base = root / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    cfg = V.VisionConfig(steps=8, batch=8, image_size=64, hidden=32, tokens=2, per_family=SMALL)
    metrics = V.train_vision(base, root / "vision", cfg, cache_dir=root / "cache")
    return root, base, metrics


def test_toy_questions_are_deterministic_split_by_image_and_hold_out_a_pair():
    a, b = V.make_toy_questions(3, SMALL), V.make_toy_questions(3, SMALL)
    assert {s: V.examples_hash(x) for s, x in a.items()} == {s: V.examples_hash(x) for s, x in b.items()}
    assert V.examples_hash(V.make_toy_questions(4, SMALL)["train"]) != V.examples_hash(a["train"])
    seen = {s: {e.image.tobytes() for e in x} for s, x in a.items()}
    assert not seen["train"] & seen["test"] and not seen["train"] & seen["validation"]
    assert {e.family for e in a["test"]} == set(V.QUESTIONS)
    big = V.make_toy_questions(0, {"train": 200, "validation": 0, "test": 200})
    assert not [e for e in big["train"] if e.tag == "held-out"] and [e for e in big["test"] if e.tag == "held-out"]
    counts = [e.answer for e in big["train"] if e.family == "count"]
    assert {counts.count(c) for c in V.CLASSES["count"]} == {50}  # balanced, so a constant answer scores chance
    assert all(e.image.size == (V.CANVAS, V.CANVAS) and e.image.mode == "RGB" for e in big["test"])


def test_encoder_loads_the_shipped_weights_and_pools_a_grid():
    enc = V.load_encoder()
    images = [Image.new("RGB", (64, 64)), Image.new("RGB", (64, 64), (255, 0, 0))]
    feats = V.encode_images(enc, images, 64, 2)
    assert V.feature_groups(2, 4) == [(4, 1280), (16, V.STAGE_CHANNELS)]
    assert feats.shape == (2, 4 * 1280 + 16 * V.STAGE_CHANNELS) and not torch.equal(feats[0], feats[1])
    # the same batch without the stage: the head's cells come first (the same batch, since a convolution's
    # arithmetic may differ with the batch size and the threads, by more than allclose's 1e-8)
    head = V.encode_images(enc, images, 64, 2, stage_grid=0)
    assert head.shape == (2, 4 * 1280) and torch.allclose(head, feats[:, :4 * 1280], rtol=1e-4, atol=1e-5)
    stage = feats[1, 4 * 1280:].view(16, V.STAGE_CHANNELS)
    assert not torch.equal(stage[0], stage[5])  # a 4x4 grid of the stage's map, not one value repeated
    assert not any(p.requires_grad for p in enc.parameters())


def test_trains_saves_with_a_manifest(trained):
    root, _, metrics = trained
    manifest = json.loads((root / "vision" / "manifest.json").read_text())
    assert manifest["kind"] == "tutor-vision" and manifest["tokens"] == 2 and "efficientnet-lite0" in manifest["encoder"]
    assert len(manifest["base"]["fingerprint"]) == 64 and set(manifest["inputs"]) == {"train", "validation", "test"}
    assert np.isfinite(metrics["final_loss"]) and set(metrics["test"]) >= set(V.QUESTIONS) | {"overall"}
    for row in metrics["test"].values():
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["blank_accuracy"] <= 1
    assert list((root / "cache").glob("features-*.pt"))  # the encoder's features are cached
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # nothing half-written beside it


def test_loads_answers_and_the_image_matters(trained):
    root, base, _ = trained
    va = V.VisionAnswerer.load(root / "vision", base)
    digit = V.make_toy_questions(0, SMALL)["test"][0].image
    buf = io.BytesIO()
    digit.save(buf, "PNG")
    path = root / "d.png"
    digit.save(path)
    answers = {va.answer(digit, "What digit is this?"), va.answer(buf.getvalue(), "What digit is this?"),
               va.answer(path, "What digit is this?"), va.answer(str(path), "What digit is this?")}
    assert len(answers) == 1 and isinstance(answers.pop(), str)
    f1, f2 = va.features(digit), va.features(Image.new("RGB", (64, 64)))
    ids = torch.tensor([[va.tokenizer.bos_token_id]])
    l1 = va.model(inputs_embeds=V._fused_embeds(va.model, va.projector, f1, ids)).logits
    l2 = va.model(inputs_embeds=V._fused_embeds(va.model, va.projector, f2, ids)).logits
    assert not torch.allclose(l1, l2)  # the image tokens reach the answer
    with pytest.raises(RequestError):
        va.answer(digit, "  ")


def test_refuses_another_base_in_one_line(trained):
    root, _, _ = trained
    tok = _tokenizer()
    with pytest.raises(ArtifactError, match="trained on base") as e:
        V.VisionAnswerer.load(root / "vision", (make_model(tok, seed=1, separable=False), tok))
    assert "\n" not in str(e.value)
    with pytest.raises(ArtifactError, match="not a tutor vision artifact"):
        V.VisionAnswerer.load(root, (make_model(tok, separable=False), tok))


def test_bad_images_are_one_line_errors(tmp_path, monkeypatch):
    (tmp_path / "x.png").write_text("not an image at all")
    for bad in (tmp_path / "x.png", b"\x89PNG broken", tmp_path / "missing.png"):
        with pytest.raises(DataError) as e:
            V.load_image(bad)
        assert "\n" not in str(e.value)
    monkeypatch.setattr(V, "MAX_PIXELS", 100)
    with pytest.raises(DataError, match="too many pixels"):
        V.load_image(Image.new("RGB", (20, 20)))
    monkeypatch.setattr(V, "MAX_BYTES", 10)
    Image.new("RGB", (8, 8)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match="too large"):
        V.load_image(tmp_path / "big.png")


def test_other_modes_are_converted():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert V.load_image(rgba).getpixel((0, 0)) == (0, 0, 0)  # transparent over black
    grey16 = Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    for image in (Image.new("L", (8, 8), 9), Image.new("P", (8, 8)), Image.new("CMYK", (8, 8)), grey16,
                  Image.new("1", (8, 8))):
        out = V.load_image(image)
        assert out.mode == "RGB" and out.size == (8, 8)


def test_cli_see_and_its_errors(trained):
    from zephyra.apps.tutor.cli import app

    root, base, _ = trained
    img = root / "s.png"
    V.make_toy_questions(0, SMALL)["test"][1].image.save(img)
    ok = CliRunner().invoke(app, ["see", str(img), "What shape is this?", "--vision", str(root / "vision"),
                                  "--base", str(base), "--json"])
    assert ok.exit_code == 0, ok.output
    assert set(json.loads(ok.stdout)) == {"answer", "question", "image"}
    (root / "bad.png").write_bytes(b"nope")
    bad = CliRunner().invoke(app, ["see", str(root / "bad.png"), "What?", "--vision", str(root / "vision"),
                                   "--base", str(base)])
    assert bad.exit_code == 2 and "error:" in bad.output and "not an image" in bad.output
