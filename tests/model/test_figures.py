"""The evaluation's figures: image grids tile a batch in order."""

from __future__ import annotations

import numpy as np
import torch

from model.figures import grid


def test_a_grid_tiles_the_batch_row_by_row_on_white() -> None:
    images = torch.stack([torch.full((1, 2, 3), v) for v in (0.0, 0.5, 1.0)])
    img = np.asarray(grid(images, nrow=2, pad=1))
    assert img.shape == (2 * (2 + 1) + 1, 2 * (3 + 1) + 1)
    assert (img[1:3, 1:4] == 0).all() and (img[1:3, 5:8] == 128).all() and (img[4:6, 1:4] == 255).all()
    assert (img[0] == 255).all() and (img[4:6, 5:8] == 255).all()  # padding and the empty cell: white
    assert np.asarray(grid(images, nrow=3, pad=0, scale=2)).shape == (4, 18)
