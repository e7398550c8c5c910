"""PNG decoders side by side on the same files: libspng and libpng (imagecodecs), and Pillow.

    python -m bench.png_decoders [--repeats 50]

Random RGB images (incompressible: the worst case for the inflate step) of 28x28, 512x512 and
2048x1536, written once at zlib level 1; each decoder reads each file ``--repeats`` times (a fifth
of them for the largest), interleaved. Prints the median milliseconds per decode. Not part of CI.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable

import imagecodecs
import numpy as np
from PIL import Image


def pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


DECODERS: dict[str, Callable[[bytes], np.ndarray]] = {
    "libspng": imagecodecs.spng_decode, "libpng": imagecodecs.png_decode, "pillow": pillow_decode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    report: dict[str, dict[str, float]] = {}
    for height, width in [(28, 28), (512, 512), (1536, 2048)]:
        data = bytes(imagecodecs.png_encode(rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                                            level=1))
        times: dict[str, list[float]] = {name: [] for name in DECODERS}
        for _ in range(args.repeats if height * width < 10**6 else max(1, args.repeats // 5)):
            for name, decode in DECODERS.items():
                start = time.perf_counter()
                decode(data)
                times[name].append(time.perf_counter() - start)
        report[f"{width}x{height}"] = {name: round(statistics.median(t) * 1e3, 3)
                                       for name, t in times.items()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
