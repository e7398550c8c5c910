"""``--device``: auto, cpu or cuda, and a clear mistake for a device that is not there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from model.cli import UsageError
from model.device import resolve_device


def test_cpu_and_auto_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UsageError, match=r"^--device cuda: no CUDA device is available \(use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(UsageError, match=r"^--device must be one of auto, cpu, cuda, not 'tpu'$"):
        resolve_device("tpu")


@pytest.fixture()
def tf32_on() -> Iterator[None]:
    """TF32 allowed for the test, and the process's own setting back after it."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.usefixtures("tf32_on")
def test_cuda_is_the_ranks_device_and_exact_turns_tf32_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # torch.device("cuda", n) needs no GPU
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32  # training keeps TF32
    assert resolve_device("cuda", exact=True) == torch.device("cuda", 0)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
