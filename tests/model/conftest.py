"""The model tests run torch on one thread, and so do the processes they start.

Their tensors are small: a parallel region costs more than it saves on them, and on a busy machine
(the rest of the suite, its servers and training processes, other jobs) each one waits for the
second thread to be scheduled, about 20 ms a convolution, which made a test of a few hundred small
forwards take minutes instead of seconds. One thread also matches how the shipped figures were
made (``--threads 1``). A test or command that sets its own count (``--threads``) still does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from tests.conftest import ONE_THREAD


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One thread here, and in every process a test starts (``python -m model.train``, torchrun's
    ranks, the evaluation's BM3D workers): they read ``OMP_NUM_THREADS``."""
    for name, value in ONE_THREAD.items():
        monkeypatch.setenv(name, value)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
