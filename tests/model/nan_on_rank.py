"""``python -m model.train`` with one DDP rank's loss made NaN at one step, as a bad batch on that
rank's shard would make it: run under torchrun as ``-m tests.model.nan_on_rank`` with the flags of
``model.train``, and ``NAN_RANK`` and ``NAN_STEP`` in the environment.

Only the loss of the DAE task is touched; the network, the loop and its checks are the real ones.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from model.tasks import DAETask
from model.train import main

RANK, STEP = int(os.environ["NAN_RANK"]), int(os.environ["NAN_STEP"])
real_loss = DAETask.loss


def loss_with_nan(self: DAETask, *args: Any) -> Any:
    loss, parts = real_loss(self, *args)
    step = args[2]
    if step == STEP and int(os.environ.get("RANK", "0")) == RANK:
        loss = loss * float("nan")
    return loss, parts


DAETask.loss = loss_with_nan  # type: ignore[method-assign]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
