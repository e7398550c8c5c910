"""app/gc_tuning.py: the collector tuned while serving and handed back however serving ends."""

from __future__ import annotations

import gc

import pytest

from app.gc_tuning import tuned_gc


def test_freezing_moves_the_live_objects_out_and_hands_them_back() -> None:
    gc.unfreeze()
    alive = [object() for _ in range(1000)]
    with tuned_gc(freeze=True, gen0_threshold=0):
        assert gc.get_freeze_count() >= len(alive)
    assert gc.get_freeze_count() == 0
    with tuned_gc(freeze=False, gen0_threshold=0):
        assert gc.get_freeze_count() == 0


def test_the_young_threshold_is_set_inside_and_restored_even_when_serving_fails() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError, match="boom"), tuned_gc(freeze=True, gen0_threshold=7777):
        assert gc.get_threshold() == (7777, *before[1:])
        raise RuntimeError("boom")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    with tuned_gc(freeze=False, gen0_threshold=0):  # 0: Python's own
        assert gc.get_threshold() == before
