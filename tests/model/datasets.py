"""Where the tests find the published data sets: the folder in AESERVE_DATASETS, by default
``../shared/datasets`` beside the checkout (docs/data.md says how to get them)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import ROOT

DATASETS = Path(os.environ.get("AESERVE_DATASETS", ROOT.parent / "shared" / "datasets"))
