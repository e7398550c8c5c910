"""The garbage collector while serving: the startup objects frozen out of it, young collections
spaced out, and both handed back at shutdown (docs/serving.md, settings ``gc_freeze`` and
``gc_gen0_threshold``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def tuned_gc(freeze: bool, gen0_threshold: int) -> Iterator[None]:
    """While inside: with ``freeze``, every object alive on entry (torch, the models, the app) moved
    to the permanent generation, so no collection walks them again; with ``gen0_threshold`` (0:
    Python's own), that many allocations between young collections. Undone on exit."""
    thresholds = gc.get_threshold()
    if freeze:
        gc.collect()
        gc.freeze()
    if gen0_threshold:
        gc.set_threshold(gen0_threshold, *thresholds[1:])
    try:
        yield
    finally:
        if freeze:
            gc.unfreeze()
        gc.set_threshold(*thresholds)
