"""Check a data folder: which data sets are there, complete and unaltered, and what is missing.

The expected files and their sha256 are in ``model/data/manifests/<set>.sha256`` (the format of
``sha256sum``: ``<hex>  <file name>``). MNIST is checked on its decompressed IDX bytes, so a
``.gz`` re-compressed by another mirror still passes (and so do uncompressed files).
No torch here: the check answers at once.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

MANIFESTS = Path(__file__).resolve().parent / "manifests"
SETS = {  # folder under the data folder -> what it is for
    "mnist": "MNIST digits: trains and evaluates mnist-dae and mnist-vae",
    "train400": "Train400 (gray): trains photo-denoiser, photo-gray and (with cbsd432) photo-color",
    "cbsd432": "CBSD432 (colour): trains photo-color",
    "bsd68": "BSD68 (gray): evaluates the photo denoiser",
    "cbsd68": "CBSD68 (colour): evaluates the photo denoiser in colour",
}
COMPRESSED = {"mnist"}  # checked on the decompressed bytes; the files may end in .gz


@dataclass
class SetReport:
    name: str
    expected: int
    checksums: bool = True  # whether every file's sha256 was compared
    present: bool = False
    missing: list[str] = field(default_factory=list)
    differ: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.present and not self.missing and not self.differ

    def line(self) -> str:
        what = SETS[self.name]
        if not self.present:
            return f"MISSING {self.name}/: no such folder ({what})"
        if self.ok:
            checked = "checksums match" if self.checksums else "checksums not checked"
            return f"ok      {self.name}/: {self.expected} files, {checked}"
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} of {self.expected} files missing ({_names(self.missing)})")
        if self.differ:
            parts.append(f"{len(self.differ)} files differ from the published ones "
                         f"({_names(self.differ)})")
        return f"BAD     {self.name}/: " + "; ".join(parts)


def _names(names: list[str], shown: int = 3) -> str:
    more = f", … {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def read_manifest(name: str) -> dict[str, str]:
    """file name -> expected sha256 for one data set."""
    entries = {}
    for line in (MANIFESTS / f"{name}.sha256").read_text().splitlines():
        if line.strip():
            digest, file = line.split(maxsplit=1)
            entries[file.strip().lstrip("*")] = digest
    return entries


def sha256_of(path: Path, decompress: bool = False) -> str:
    digest = hashlib.sha256()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_set(data_dir: Path, name: str, checksums: bool = True) -> SetReport:
    """Compare ``data_dir/name`` with its manifest: presence, file names and, unless told not
    to, every file's sha256."""
    expected = read_manifest(name)
    report = SetReport(name, len(expected), checksums)
    folder = data_dir / name
    if not folder.is_dir():
        return report
    report.present = True
    for file, digest in sorted(expected.items()):
        path = folder / file
        gz = folder / f"{file}.gz"
        if name in COMPRESSED and not path.is_file() and gz.is_file():
            path = gz
        if not path.is_file():
            report.missing.append(file)
        elif checksums and sha256_of(path, decompress=path.suffix == ".gz") != digest:
            report.differ.append(path.name)
    return report


def check(data_dir: Path, names: list[str], checksums: bool = True) -> list[SetReport]:
    return [check_set(data_dir, name, checksums) for name in names]
