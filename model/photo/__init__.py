"""The photo denoiser: one blind model for real photographs of any size, gray and colour.

- ``model.photo.network``: ``PhotoDenoiser``, the network (built from a ``ModelConfig`` with
  ``kind == "photo"``);
- ``model.photo.inference``: ``denoise_image`` (tiled, any size, gray or RGB), ``work_pixels`` (what
  one image costs) and ``estimate_noise_sigma`` (a blind estimate of the input's noise level);
- ``model.photo.preset``: the training recipes;
- ``model.photo.task``: what a training step and a validation pass mean (training only);
- ``model.photo.evaluate``: the evaluation protocols (evaluation only).

Loading and serving need only the network and inference modules, which import nothing from
training or evaluation.
"""

from __future__ import annotations
