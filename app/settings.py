"""Service settings, read from ``AESERVE_*`` environment variables and validated at startup."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


def _default_torch_threads() -> int:
    """Leave one core to the event loop (HTTP, PNG codec) when there is more than one."""
    return max(1, (os.cpu_count() or 1) - 1)


class Settings(BaseSettings):
    """Every knob of the service; ``AESERVE_<NAME>`` in the environment sets ``<name>``."""

    model_config = SettingsConfigDict(env_prefix="AESERVE_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    log_level: LogLevel = "info"
    checkpoint_dir: Path = ROOT / "checkpoints"
    device: str = "auto"
    api_token: SecretStr | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # limits
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(default=4096 * 4096, ge=1)
    max_images: int = Field(default=64, ge=1)
    max_n: int = Field(default=256, ge=1)
    max_k: int = Field(default=1000, ge=1)
    default_k: int = Field(default=100, ge=1)
    max_steps: int = Field(default=64, ge=2)
    request_timeout_s: float = Field(default=30.0, gt=0)

    # batching and compute
    # 16, not 32: with up to 32 clients that each wait for their answer, a batch that takes all of
    # them leaves the event loop nothing to do while the model runs, and the two fall into
    # lockstep (measured: VAE encode at 32 connections 530 -> 370 req/s in some runs); at 16 the next
    # batch is queued when one ends. ONNX Runtime's per-image cost is flat from 16 rows on a CPU.
    max_batch_size: int = Field(default=16, ge=1)
    max_batch_delay_ms: float = Field(default=2.0, ge=0)
    queue_size: int = Field(default=256, ge=1)
    inline_max_rows: int = Field(default=0, ge=0)
    torch_threads: int = Field(default_factory=_default_torch_threads, ge=1)
    png_compress_level: int = Field(default=1, ge=0, le=9)
    warmup: bool = True
    # after startup, move every object alive then (torch, the models) out of the cyclic collector's
    # view: its full collections then skip them (measured: 80 ms pauses under load -> ~1 ms)
    gc_freeze: bool = True
    # allocations between young-generation collections (Python's default: 700). Request garbage
    # dies by reference counting; a collection every 700 allocations cost ~30 µs per 28x28 denoise
    # (measured, docs/serving.md). 0 leaves Python's default.
    gc_gen0_threshold: int = Field(default=10_000, ge=0)
    # auto: ONNX Runtime for the autoencoders on a CPU when onnxruntime is installed, else torch
    runtime: Literal["auto", "torch", "onnxruntime"] = "auto"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        head = value.split(":", 1)[0]
        if head not in ("auto", "cpu", "cuda", "mps"):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
        return value

    @field_validator("api_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        return value

    @model_validator(mode="after")
    def _check_k(self) -> Settings:
        if self.default_k > self.max_k:
            raise ValueError(f"default_k ({self.default_k}) must not exceed max_k ({self.max_k})")
        return self

    def resolve_runtime(self, device: str) -> str:
        """``auto`` becomes ``onnxruntime`` on a CPU with the package installed, else ``torch``."""
        from app.onnx_runtime import available

        if self.runtime == "torch" or (self.runtime == "auto" and (device != "cpu" or not available())):
            return "torch"
        if device != "cpu":
            raise ValueError(f"AESERVE_RUNTIME=onnxruntime runs on the CPU only; the device is {device}")
        if not available():
            raise ValueError("AESERVE_RUNTIME=onnxruntime needs the onnxruntime and onnx packages")
        return "onnxruntime"

    def resolve_device(self) -> str:
        """``auto`` becomes ``cuda`` when a GPU is visible, else ``cpu``."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
