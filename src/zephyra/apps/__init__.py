"""Applications on the platform: each uses the runtime, retrieval, training and serving pieces, and none of them
is used by the platform (tests/core/test_architecture.py)."""
