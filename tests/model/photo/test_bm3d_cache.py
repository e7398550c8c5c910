"""``--bm3d-cache``: evaluations sharing one file keep each other's entries, and never see it torn."""

from __future__ import annotations

import fcntl
import json
import threading
from pathlib import Path

import pytest

from model.cli import UsageError
from model.photo import bm3d_cache
from model.photo.bm3d_cache import Bm3dCache


def lock_of(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


def test_two_runs_that_read_the_file_before_either_saved_keep_both_their_entries(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    first, second = Bm3dCache(path), Bm3dCache(path)
    first.put("a", 30.0, 1.0, image=0)
    second.put("b", 31.0, 2.0, image=1)
    first.save()
    second.save()  # read before "a" was saved: the old single writer wrote "b" alone
    assert set(json.loads(path.read_text())["entries"]) == {"a", "b"}
    assert Bm3dCache(path).get("a") == (30.0, 1.0) and Bm3dCache(path).get("b") == (31.0, 2.0)
    assert set(second.entries) == {"a", "b"}  # the saver has the other run's entries too


def test_a_save_holds_the_lock_from_reading_the_file_to_replacing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save stopped just before its write holds the lock: another writer cannot take it until
    the write is done; then the file holds both runs' entries."""
    path = tmp_path / "cache.json"
    inside, go_on = threading.Event(), threading.Event()
    write = bm3d_cache.atomic_write_bytes

    def gated_write(target: Path, data: bytes) -> None:
        if threading.current_thread().name == "first":
            inside.set()
            assert go_on.wait(60)
        write(target, data)

    monkeypatch.setattr(bm3d_cache, "atomic_write_bytes", gated_write)
    first, second = Bm3dCache(path), Bm3dCache(path)
    first.put("a", 30.0, 1.0)
    second.put("b", 31.0, 2.0)
    saving = threading.Thread(target=first.save, name="first")
    saving.start()
    assert inside.wait(60)
    with lock_of(path).open("a") as lock:
        with pytest.raises(BlockingIOError):  # held by the first save
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        go_on.set()
        saving.join(60)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released once the file is replaced
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert not saving.is_alive() and set(json.loads(path.read_text())["entries"]) == {"a"}
    second.save()
    assert set(json.loads(path.read_text())["entries"]) == {"a", "b"}


def test_many_threads_saving_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    caches = [Bm3dCache(path) for _ in range(8)]
    for i, cache in enumerate(caches):
        cache.put(f"key{i}", float(i), 0.5)
    start = threading.Barrier(len(caches))

    def save(cache: Bm3dCache) -> None:
        start.wait(60)
        cache.save()

    threads = [threading.Thread(target=save, args=(cache,)) for cache in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert set(json.loads(path.read_text())["entries"]) == {f"key{i}" for i in range(8)}


@pytest.mark.parametrize(("text", "problem"), [
    ("{torn", "not valid JSON"),
    ('{"something": "else"}', "expected {'entries': {...}}"),
])
def test_a_file_that_is_not_a_cache_is_refused_and_left_alone(tmp_path: Path, text: str,
                                                              problem: str) -> None:
    path = tmp_path / "cache.json"
    path.write_text(text)
    with pytest.raises(UsageError, match=f"--bm3d-cache {path}: not a BM3D cache") as refused:
        Bm3dCache(path)
    assert problem in str(refused.value)
    assert path.read_text() == text
