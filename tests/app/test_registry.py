"""Finding, verifying and loading checkpoints: each kind's class, one-line startup errors; the
registry's startup load, reloads, retirements and shutdown, on the real tiny checkpoints."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import shutil
import threading
import weakref
from pathlib import Path

import pytest
import torch

from app.admission import Ticket, WorkBudget
from app.batching import Check
from app.drain import Drain, shutting_down
from app.errors import ApiError
from app.kinds import ServedModel
from app.kinds.autoencoder import Autoencoder, VariationalAutoencoder
from app.metrics import Metrics
from app.registry import (
    Registry,
    ReloadReport,
    StartupError,
    discover,
    load_model,
    preflight,
    reload_in_background,
)
from app.settings import Settings
from model.checkpoint import CheckpointError


def settings_for(checkpoints: Path) -> Settings:
    return Settings(checkpoint_dir=checkpoints, runtime="torch", torch_threads=1)


def test_discover_lists_model_folders_by_name_and_skips_the_rest(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    (root / "notes").mkdir()  # no config.json: not a model
    shutil.copytree(root / "mnist-dae", root / ".mnist-dae.staged")  # hidden: being staged
    (root / "README.txt").write_text("a file, not a folder")
    assert [p.name for p in discover(root)] == ["mnist-dae", "mnist-vae"]


def test_a_missing_or_empty_checkpoint_directory_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"does not exist.*AESERVE_CHECKPOINT_DIR"):
        discover(tmp_path / "nowhere")
    with pytest.raises(StartupError, match="no model folder"):
        discover(tmp_path)


def test_preflight_verifies_every_checkpoint_and_names_them(tiny_checkpoints: Path) -> None:
    assert preflight(settings_for(tiny_checkpoints)) == ["mnist-dae", "mnist-vae"]


def test_an_unknown_kind_is_refused_naming_the_folder(tiny_checkpoints: Path, tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints / "mnist-dae", root / "odd")
    config = root / "odd" / "config.json"
    meta = json.loads(config.read_text())
    meta["kind"] = "gan"
    config.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as err:
        preflight(settings_for(root))
    assert "odd" in str(err.value)


def test_a_hand_edited_input_shape_is_refused_before_serving(tiny_checkpoints: Path,
                                                             tmp_path: Path) -> None:
    """config.json's ``input_shape`` disagreeing with its ``config`` (a hand edit) is a bad
    checkpoint, named, not a service that checks inputs against one shape and runs a network of
    another (its warm-up crashed inside torch)."""
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints / "mnist-dae", root / "edited")
    config = root / "edited" / "config.json"
    meta = json.loads(config.read_text())
    meta["input_shape"] = [3, 28, 28]
    config.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as err:
        preflight(settings_for(root))
    assert err.value.folder.name == "edited" and "field 'input_shape'" in err.value.problem


@pytest.mark.parametrize(("name", "cls"), [("mnist-dae", Autoencoder),
                                           ("mnist-vae", VariationalAutoencoder)])
def test_load_model_picks_the_class_of_the_kind(tiny_checkpoints: Path, name: str, cls: type) -> None:
    served = load_model(tiny_checkpoints / name, settings_for(tiny_checkpoints), Metrics())
    assert type(served) is cls and served.name == name
    assert not served.warm and served.load_seconds > 0
    assert served.card().runtime == "torch" and served.card().sha256 == served.checkpoint.sha256


# ---- the registry: startup, reloads, retirements, shutdown -----------------------------------
LONG_S = 600.0  # a deadline no test reaches
WAIT_S = 60.0  # the longest any event is waited for: a hang fails the test, it never times it


def copied(tiny_checkpoints: Path, tmp_path: Path) -> Path:
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoints, root)
    return root


def replace_folder(root: Path, name: str, source: Path) -> None:
    """Other weights (and another config.json) under ``name``, as a deployment puts them there."""
    shutil.rmtree(root / name)
    shutil.copytree(source, root / name)


def changed_meta(folder: Path, **changes: object) -> None:
    meta = json.loads((folder / "config.json").read_text())
    meta.update(changes)
    (folder / "config.json").write_text(json.dumps(meta))


def corrupt(folder: Path) -> None:
    """Weights that no longer match the sha256 in config.json; config.json changed, so a reload
    tries them."""
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8] ^= 0xFF
    weights.write_bytes(bytes(data))
    changed_meta(folder, note="changed, so a reload tries it")


def registry_for(root: Path) -> Registry:
    return Registry(settings_for(root), Metrics(), Drain(LONG_S))


def loads(registry: Registry, name: str, result: str) -> float:
    return float(registry.metrics.loads.labels(name, result)._value.get())


def test_a_checkpoint_refused_at_startup_counts_as_a_refused_load(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    root = copied(tiny_checkpoints, tmp_path)
    corrupt(root / "mnist-vae")

    async def scenario() -> Registry:
        registry = registry_for(root)
        with pytest.raises(CheckpointError, match="sha256 mismatch"):
            await registry.load_all()
        await registry.stop_all(shutting_down())
        return registry

    registry = asyncio.run(scenario())
    assert loads(registry, "mnist-dae", "ok") == 1 and loads(registry, "mnist-dae", "refused") == 0
    assert loads(registry, "mnist-vae", "refused") == 1 and loads(registry, "mnist-vae", "ok") == 0


def test_shutdown_stops_a_retiring_model_and_fails_the_requests_it_still_queues(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    root = copied(tiny_checkpoints, tmp_path)
    gate, started = threading.Event(), threading.Event()

    def hold(_: object, check: Check) -> None:  # a long job: keeps the old model's thread
        started.set()
        assert gate.wait(WAIT_S), "gate never opened"

    async def scenario() -> tuple[bool, bool, bool, BaseException | None]:
        registry = registry_for(root)
        await registry.load_all()
        old = registry.models["mnist-dae"]
        running, waiting = Ticket(LONG_S), Ticket(LONG_S)
        old.budget.open(running)
        old.budget.open(waiting)
        job = asyncio.ensure_future(old.batcher.run_alone(hold, None, running))
        assert await asyncio.to_thread(started.wait, WAIT_S)
        queued = asyncio.ensure_future(old.batcher.run_alone(lambda _, check: None, None, waiting))
        await asyncio.sleep(0)  # queued behind the long job
        replace_folder(root, "mnist-dae", root / "mnist-vae")
        report = await registry.reload()
        assert report.loaded == ["mnist-dae"] and registry.models["mnist-dae"] is not old
        retiring = old.batcher.alive  # its requests hold it
        await registry.stop_all(shutting_down())
        gate.set()
        outcomes = await asyncio.gather(job, queued, return_exceptions=True)
        running.close()
        waiting.close()
        assert all(isinstance(o, ApiError) and o.code == "shutting_down" for o in outcomes)
        return retiring, old.batcher.alive, registry.models["mnist-dae"].batcher.alive, waiting.error

    retiring, old_alive, new_alive, error = asyncio.run(scenario())
    assert retiring and not old_alive and not new_alive
    assert isinstance(error, ApiError) and error.code == "shutting_down"


def test_a_sighup_during_the_startup_load_reloads_after_it_and_loads_nothing_twice(
    tiny_checkpoints: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = copied(tiny_checkpoints, tmp_path)

    async def scenario() -> Registry:
        registry = registry_for(root)
        loading = asyncio.ensure_future(registry.load_all())
        reloading = reload_in_background(registry)  # what SIGHUP does, while the models load
        await loading
        await reloading
        await registry.stop_all(shutting_down())
        return registry

    with caplog.at_level(logging.INFO, "aeserve"):
        registry = asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records]
    for name in ("mnist-dae", "mnist-vae"):
        assert sum(line.startswith(f"loaded {name} (") for line in lines) == 1, lines
        assert loads(registry, name, "ok") == 1, name
    (reload_line,) = [line for line in lines if line.startswith("reload:")]
    assert reload_line.startswith("reload: loaded -, unchanged ['mnist-dae', 'mnist-vae']")


def test_a_retired_model_is_let_go_once_stopped(tiny_checkpoints: Path, tmp_path: Path) -> None:
    root = copied(tiny_checkpoints, tmp_path)

    async def scenario() -> tuple[weakref.ref[WorkBudget], Registry]:
        registry = registry_for(root)
        await registry.load_all()
        budget = weakref.ref(registry.models["mnist-dae"].budget)
        replace_folder(root, "mnist-dae", root / "mnist-vae")
        shutil.rmtree(root / "mnist-vae")  # one replaced, one removed
        report = await registry.reload()
        assert report.loaded == ["mnist-dae"] and report.retired == ["mnist-vae"]
        await asyncio.gather(*registry.tasks)  # the retirements: no request holds either
        assert not registry.retiring
        await registry.stop_all(shutting_down())
        return budget, registry

    budget, registry = asyncio.run(scenario())
    gc.collect()
    assert budget() is None  # the registry (its drain too), still here, no longer holds it
    assert registry.models["mnist-dae"].kind == "vae" and "mnist-vae" not in registry.models


def test_a_refusal_logs_one_line_or_a_traceback_and_a_never_served_model_keeps_no_series(
    tiny_checkpoints: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    root = copied(tiny_checkpoints, tmp_path)
    warm_up_extra = Autoencoder.warm_up_extra

    async def failing_for_odd(served: Autoencoder) -> None:  # a bug, not the checkpoint's fault
        if served.name == "odd":
            raise RuntimeError("the warm-up of odd failed")
        await warm_up_extra(served)

    monkeypatch.setattr(Autoencoder, "warm_up_extra", failing_for_odd)

    async def scenario() -> tuple[Registry, ReloadReport]:
        registry = registry_for(root)
        await registry.load_all()
        corrupt(root / "mnist-dae")  # refused by verification: the old one serves on
        shutil.copytree(tiny_checkpoints / "mnist-dae", root / "bad")
        corrupt(root / "bad")  # refused by verification, never served
        # verifies (config.json's sha256 is of the weights), loads, and fails in its warm-up
        shutil.copytree(tiny_checkpoints / "mnist-dae", root / "odd")
        report = await registry.reload()
        await registry.stop_all(shutting_down())
        return registry, report

    with caplog.at_level(logging.ERROR, "aeserve"):
        registry, report = asyncio.run(scenario())
    assert sorted(report.refused) == ["bad", "mnist-dae", "odd"]
    lines = {r.getMessage().split(",")[0]: r for r in caplog.records
             if r.getMessage().startswith("reload refused")}
    assert lines["reload refused mnist-dae"].exc_info is None
    assert lines["reload refused bad"].exc_info is None
    odd = lines["reload refused odd"]
    assert odd.exc_info is not None and odd.exc_info[0] is RuntimeError
    assert "RuntimeError" in odd.getMessage()

    text = registry.metrics.render().decode()
    for name in ("bad", "odd"):
        series = {line.split("{")[0] for line in text.splitlines() if f'model="{name}"' in line}
        assert series == {"aeserve_model_loads_total", "aeserve_model_loads_created"}, series
        assert f'aeserve_model_loads_total{{model="{name}",result="refused"}} 1.0' in text
    assert 'aeserve_queue_depth{model="mnist-dae"} 0.0' in text  # it serves on, its series too
    assert loads(registry, "mnist-dae", "ok") == 1 and loads(registry, "mnist-dae", "refused") == 1


def test_a_folder_left_without_its_config_is_refused_not_retired(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    """A deployment that deletes config.json first (or copies it last) must not take the model
    down: only a folder that is gone retires its model."""
    root = copied(tiny_checkpoints, tmp_path)

    async def scenario() -> tuple[ReloadReport, ReloadReport, Registry]:
        registry = registry_for(root)
        await registry.load_all()
        old = registry.models["mnist-dae"]
        (root / "mnist-dae" / "config.json").unlink()
        checked = await registry.check()
        report = await registry.reload()
        assert registry.models["mnist-dae"] is old and not registry.retiring
        await registry.stop_all(shutting_down())
        return checked, report, registry

    checked, report, registry = asyncio.run(scenario())
    for r in (checked, report):
        assert list(r.refused) == ["mnist-dae"] and "config.json" in r.refused["mnist-dae"]
        assert "missing" in r.refused["mnist-dae"] and r.retired == []
    assert report.unchanged == ["mnist-vae"] and checked.unchanged == ["mnist-vae"]
    assert loads(registry, "mnist-dae", "refused") == 2


def test_a_background_task_that_fails_is_logged_with_its_traceback_when_it_ends(
    tiny_checkpoints: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("the retirement broke")

    async def scenario() -> set[asyncio.Task[None]]:
        registry = registry_for(tiny_checkpoints)
        task = registry.background(broken(), "retire-mnist-dae")
        await asyncio.gather(task, return_exceptions=True)  # its own callback has run before
        return registry.tasks

    with caplog.at_level(logging.ERROR, logger="aeserve"):
        left = asyncio.run(scenario())
    assert not left
    (record,) = [r for r in caplog.records if r.name == "aeserve"]
    assert record.getMessage() == "retire-mnist-dae failed"
    assert record.exc_info is not None and str(record.exc_info[1]) == "the retirement broke"


def test_only_the_model_serving_its_name_reports_a_dead_batch_worker(
    tiny_checkpoints: Path, tmp_path: Path
) -> None:
    root = copied(tiny_checkpoints, tmp_path)

    def broken(*args: object) -> int:
        raise RuntimeError("a bug in the worker")

    async def kill(served: ServedModel, ticket: Ticket) -> None:
        served.batcher._take = broken  # type: ignore[method-assign]
        with pytest.raises(ApiError, match="stopped serving"):
            await served.batcher.run(lambda x: x, torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "k",
                                     ticket)

    async def scenario() -> list[str]:
        dead: list[str] = []
        registry = Registry(settings_for(root), Metrics(), Drain(LONG_S),
                            on_dead=lambda name, failure: dead.append(name))
        await registry.load_all()
        old = registry.models["mnist-dae"]
        holding = Ticket(LONG_S)
        old.budget.open(holding)  # a request on the old model: it retires only once that ends
        changed_meta(root / "mnist-dae", note="changed")
        assert (await registry.reload()).loaded == ["mnist-dae"]
        await kill(old, holding)  # the replaced model's worker dies on its way out: no report
        assert dead == [] and old in registry.retiring
        holding.close(failed=True)
        await kill(registry.models["mnist-dae"], Ticket(LONG_S))  # the one serving: reported
        await registry.stop_all(shutting_down())
        return dead

    assert asyncio.run(scenario()) == ["mnist-dae"]
