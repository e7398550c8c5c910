"""``python -m model.train`` whose ``--time-budget`` measures its pace over 8 steps instead of 300, so
that a run of a few epochs gets to the budget's plan: run under torchrun as
``-m tests.model.short_calibration`` with the flags of ``model.train``.

Only the calibration's length is changed; the plan, the loop and the messages are the real ones.
"""

from __future__ import annotations

import sys

from model import budget
from model.train import main

budget.CALIBRATION_STEPS = 8

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
