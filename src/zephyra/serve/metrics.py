"""The server's Prometheus metrics (``GET /metrics``), one registry per server, labelled by endpoint, adapter and
adapter version, never by prompt text. Latency buckets fit CPU generation: milliseconds per token, seconds to a
minute per answer.

    zephyra_requests_total{endpoint, adapter, version, status}     answered and refused requests
    zephyra_time_to_first_token_seconds{adapter, version}          histogram
    zephyra_inter_token_seconds{adapter, version}                  histogram (between streamed tokens)
    zephyra_request_seconds{endpoint, adapter, version}            histogram, end to end
    zephyra_prompt_tokens_total / zephyra_completion_tokens_total{adapter, version}
    zephyra_routing_decisions_total{adapter}                       what the router picked ("auto" requests)
    zephyra_abstentions_total                                      routed requests the router sent to the base
    zephyra_canary_assignments_total{adapter, version, arm}        requests for an adapter with a canary, by arm
    zephyra_feedback_total{adapter, version, rating}               thumbs up / down (POST /v1/feedback)
    zephyra_requests_pending                                       admitted and not finished (the bounded queue)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry()
        av = ["adapter", "version"]
        self.requests = Counter("zephyra_requests", "Requests by endpoint, adapter, version and HTTP status",
                                ["endpoint", "adapter", "version", "status"], registry=r)
        self.ttft = Histogram("zephyra_time_to_first_token_seconds", "From admission to the first token", av,
                              buckets=LATENCY_BUCKETS, registry=r)
        self.inter_token = Histogram("zephyra_inter_token_seconds", "Between consecutive streamed tokens", av,
                                     buckets=TOKEN_BUCKETS, registry=r)
        self.latency = Histogram("zephyra_request_seconds", "From admission to the last token",
                                 ["endpoint", *av], buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("zephyra_prompt_tokens", "Prompt tokens prefilled", av, registry=r)
        self.completion_tokens = Counter("zephyra_completion_tokens", "Tokens generated", av, registry=r)
        self.routed = Counter("zephyra_routing_decisions", "The router's choice for 'auto' requests", ["adapter"],
                              registry=r)
        self.abstained = Counter("zephyra_abstentions", "'auto' requests the router sent to the base", registry=r)
        self.canary = Counter("zephyra_canary_assignments", "Requests for an adapter with a canary, by arm",
                              ["adapter", "version", "arm"], registry=r)
        self.feedback = Counter("zephyra_feedback", "Ratings of answers (POST /v1/feedback)",
                                ["adapter", "version", "rating"], registry=r)
        self.pending = Gauge("zephyra_requests_pending", "Admitted requests not yet finished", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
