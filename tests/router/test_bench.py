"""The routing-cost benchmark runs, on a tiny model, and reports what it promises."""

import pytest
from router_helpers import ROUTES, make_model

from zephyra.router import InModelRouter, bench_router_overhead

PROMPTS = ["What is a compiler?", "Who is Hamlet?", "hello", "Define ethanol.", "Where is Peru?", "hi there"]


def test_bench_reports_prefill_with_and_without_the_head(tok):
    model = make_model(tok)
    result = bench_router_overhead(model, tok, PROMPTS, batch_size=4, repeats=4, warmup=1,
                                   routers={"inmodel": InModelRouter(model, tok, ROUTES)})
    assert result.prefill_ms > 0 and result.prefill_router_ms > 0 and result.head_ms > 0
    assert result.repeats == 4 and result.prompt_tokens >= 8 and set(result.routers) == {"inmodel"}
    md = result.markdown()
    assert "| prefill + in-model router head |" in md and "| inmodel router, standalone |" in md
    assert "| prefill + inmodel router inside it (route_trunk) |" in md and set(result.in_prefill) == {"inmodel"}
    assert result.in_prefill["inmodel"]["ratio"] > 0 and len(result.to_dict()["rows"]) == 5


def test_bench_needs_a_full_batch(tok):
    with pytest.raises(ValueError, match="needs 8 prompts"):
        bench_router_overhead(make_model(tok), tok, PROMPTS, batch_size=8)
