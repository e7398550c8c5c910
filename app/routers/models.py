"""What is served: the model list and each model's card."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.deps import ModelDep
from app.registry import ServedModel

router = APIRouter(prefix="/v1/models", tags=["models"])


def model_card(served: ServedModel) -> dict[str, Any]:
    """Everything a client needs to call the model, and where it came from."""
    meta = served.meta
    size = served.size
    training = {k: v for k, v in meta.get("training", {}).items() if k != "history"}
    config = meta.get("config", {})
    return {
        "name": served.name,
        "kind": served.kind,
        "input_shape": meta["input_shape"],
        "channels": served.channels,
        "size": {"height": size[0], "width": size[1]} if size else None,
        "any_size": size is None,
        "value_range": meta.get("value_range", [0.0, 1.0]),
        "latent_dim": served.latent_dim,
        "likelihood": meta.get("likelihood"),
        "operations": list(served.operations),
        "device": served.device,
        "runtime": served.ops.runtime,
        "sha256": served.checkpoint.sha256,
        "ready": served.warm,
        "load_seconds": round(served.load_seconds, 4),
        "torch_version": meta.get("torch_version"),
        "recipe": {
            "model": config.get("model"),
            "noise": config.get("noise"),
            "train": config.get("train"),
        },
        "dataset": meta.get("dataset"),
        "training": training,
        "evaluation": meta.get("evaluation"),
    }


@router.get("")
async def list_models(request: Request) -> dict[str, Any]:
    models: dict[str, ServedModel] = request.app.state.models
    return {
        "models": [
            {
                "name": m.name,
                "kind": m.kind,
                "input_shape": m.meta["input_shape"],
                "any_size": m.size is None,
                "latent_dim": m.latent_dim,
                "operations": list(m.operations),
                "url": f"/v1/models/{m.name}",
            }
            for m in sorted(models.values(), key=lambda m: m.name)
        ]
    }


@router.get("/{name}")
async def get_model(served: ModelDep) -> dict[str, Any]:
    return model_card(served)
