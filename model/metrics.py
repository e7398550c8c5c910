"""The one PSNR of ``model/``."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def psnr_from_mse(mse: npt.ArrayLike, peak: float = 1.0) -> npt.NDArray[np.float64]:
    """PSNR in dB of mean squared errors, for signals whose peak value is ``peak``: the formula."""
    return np.asarray(10.0 * np.log10(peak * peak / np.maximum(np.asarray(mse, np.float64), 1e-12)))


def psnr(
    estimate: npt.ArrayLike, reference: npt.ArrayLike, peak: float = 1.0,
    axis: tuple[int, ...] | None = None,
) -> npt.NDArray[np.float64]:
    """PSNR in dB of ``estimate`` against ``reference`` (float64 arithmetic).

    ``axis``: the axes one PSNR is taken over (e.g. (1, 2, 3): one per image of a batch); None:
    one PSNR over everything. torch tensors are accepted (moved to the CPU).
    """
    est = np.asarray(_host(estimate), dtype=np.float64)
    ref = np.asarray(_host(reference), dtype=np.float64)
    return psnr_from_mse(np.mean((est - ref) ** 2, axis=axis), peak)


def psnr_8bit(clean: npt.ArrayLike, estimate: npt.ArrayLike) -> float:
    """PSNR (peak 255) of an estimate on [0, 1], clipped and rounded to 8 bits as the service
    returns it, against the clean 8-bit image."""
    est = np.clip(np.round(np.asarray(_host(estimate), dtype=np.float64) * 255.0), 0, 255)
    return float(psnr(est, clean, peak=255.0))


def _host(x: npt.ArrayLike) -> npt.ArrayLike:
    detach = getattr(x, "detach", None)
    return detach().cpu().numpy() if callable(detach) else x
