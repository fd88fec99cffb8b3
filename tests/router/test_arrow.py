"""The Arrow-style router: prototypes are the top right-singular vectors of each LoRA layer's B A, and prompts
go to the adapter whose prototypes their layer inputs align with. The adapters here are built so that the right
answer is known: adapter d's update reads exactly the embedding axis that domain d's words write."""

import copy
import json

import pytest
import torch
from router_helpers import ROUTES, make_model

from zephyra.adapters import attach_adapter, save_adapter
from zephyra.router import (
    ArrowConfig, ArrowRouter, RouterArtifactError, build_arrow_router, find_adapters, load_router, lora_prototypes,
    route_metrics,
)

DOMAINS = ROUTES[1:]
TARGETS = ["qkv_proj", "gate_up_proj"]  # the layers whose input is the residual stream (the embedding axes)


def _adapter(base, name: str, a: torch.Tensor, b_scale: float, path, seed: int):
    """Save a rank-r LoRA on ``base`` (copied) whose every targeted layer has lora_A = ``a`` (r, C)."""
    peft = attach_adapter(copy.deepcopy(base), "lora", name=name, rank=a.shape[0], target_modules=TARGETS,
                          identity_init=False)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in peft.modules():
            if hasattr(module, "lora_A") and name in module.lora_A:
                module.lora_A[name].weight.copy_(a)
                out = module.lora_B[name].weight.shape[0]
                module.lora_B[name].weight.copy_(torch.randn(out, a.shape[0], generator=gen) * b_scale)
    return save_adapter(peft, path / name, name=name, domain=name)


@pytest.fixture(scope="module")
def arrow_setup(tok, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    base = make_model(tok)
    hidden = base.config.hidden_size
    dirs = {}
    for i, d in enumerate(DOMAINS):
        axis = ROUTES.index(d)  # the axis make_model gives this domain's words
        dirs[d] = _adapter(base, d, torch.nn.functional.one_hot(torch.tensor([axis]), hidden).float(), 0.1, root, i)
    return base, dirs, root


def test_prototype_is_the_top_right_singular_vector(tok, tmp_path):
    base = make_model(tok)
    q, _ = torch.linalg.qr(torch.randn(32, 2, generator=torch.Generator().manual_seed(0)))
    v1, v2 = q[:, 0], q[:, 1]
    # B A = sum over rank of B[:, i] A[i]: make the v1 direction three times stronger than v2 for every output
    path = _adapter(base, "python", torch.stack([3 * v1, v2]), 0.1, tmp_path, seed=0)
    protos = lora_prototypes(path)
    assert set(protos) == {"model.layers.1.self_attn.qkv_proj", "model.layers.1.mlp.gate_up_proj"}
    for v in protos.values():
        assert abs(float(v @ v1)) == pytest.approx(1.0, abs=0.05)


def test_arrow_routes_by_the_adapters_weights(arrow_setup, tok, splits):
    base, dirs, _ = arrow_setup
    router, report = build_arrow_router(base, tok, dirs, splits["validation"])
    test = splits["test"]
    m = route_metrics(test.labels, [d.adapter for d in router.route(test.prompts)])
    assert m["accuracy"] >= 0.9 and m["abstention_recall"] >= 0.9, m
    assert report["layers"] == {d: 2 for d in DOMAINS} and router.labels == DOMAINS
    out = router.route(["What is benzene?"])[0].to_json()
    assert set(out) == {"prompt", "adapter", "confidence", "scores"} and list(out["scores"]) == DOMAINS


def test_token_pooling_also_routes(arrow_setup, tok, splits):
    base, dirs, _ = arrow_setup
    router, _ = build_arrow_router(base, tok, dirs, splits["validation"], ArrowConfig(pooling="token"))
    domain = [(p, y) for p, y in zip(splits["test"].prompts, splits["test"].labels) if y != "base"]
    decided = [d.top for d in router.route([p for p, _ in domain])]
    assert route_metrics([y for _, y in domain], decided)["accuracy"] >= 0.9


def test_arrow_save_load_and_find_adapters(arrow_setup, tok, splits, tmp_path):
    base, dirs, root = arrow_setup
    assert {k: str(v) for k, v in find_adapters(root).items()} == {k: str(v) for k, v in dirs.items()}
    router, report = build_arrow_router(base, tok, dirs, splits["validation"])
    path = router.save(tmp_path / "arrow", metrics=report)
    assert json.loads((path / "manifest.json").read_text())["router_kind"] == "arrow"
    loaded = load_router(path, model=base, tokenizer=tok)
    prompts = ["Lima: what is that exactly?", "hello"]
    assert [d.to_json() for d in loaded.route(prompts)] == [d.to_json() for d in router.route(prompts)]
    with pytest.raises(RouterArtifactError, match="refusing"):
        ArrowRouter.load(path, make_model(tok, seed=5), tok)


def test_adapters_of_another_base_and_non_lora_adapters_are_refused(arrow_setup, tok, tmp_path):
    base, dirs, _ = arrow_setup
    with pytest.raises(ValueError, match="refusing"):
        build_arrow_router(make_model(tok, seed=5), tok, dirs)
    ia3 = save_adapter(attach_adapter(copy.deepcopy(base), "ia3", name="python"), tmp_path / "ia3", domain="python")
    with pytest.raises(RouterArtifactError, match="LoRA"):
        lora_prototypes(ia3)
