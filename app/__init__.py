"""aeserve's HTTP service: FastAPI app, model registry, micro-batcher, codec and client."""
