"""The one place that turns a ``--device`` value into a torch device."""

from __future__ import annotations

import torch

from model.cli import UsageError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, local_rank: int = 0, exact: bool = False) -> torch.device:
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``; ``UsageError`` for anything else.

    ``exact``: full fp32 matrix products on CUDA (no TF32), so that figures measured on a GPU
    reproduce on a CPU (evaluation).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available (use --device cpu)")
        if exact:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, not {name!r}")
    return torch.device("cpu")
