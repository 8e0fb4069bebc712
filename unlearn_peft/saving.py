"""Atomic adapter saves: write into a staging directory, then move each finished file into place.

An exception while the adapter is being written (a full disk, a serialisation error, an interrupt) leaves the
previous adapter directory exactly as it was: nothing in it is touched until every file has been written. Each file
is then moved with `os.replace`, which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peft.utils import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME

from .sidecar import SIDECAR_NAME

# Moved last, so a reader that sees the new sidecar also sees the new weights and config.
COMMIT_ORDER_LAST = (CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME, SIDECAR_NAME)


@contextmanager
def staged_save(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging directory next to `directory`; on success move its files into `directory`.

    On an exception the staging directory is removed and `directory` is left untouched.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    try:
        yield staging
        names = sorted(
            (path.name for path in staging.iterdir()),
            key=lambda name: (COMMIT_ORDER_LAST.index(name) if name in COMMIT_ORDER_LAST else -1, name),
        )
        for name in names:
            source, destination = staging / name, target / name
            if source.is_dir():
                if destination.exists():
                    shutil.rmtree(destination)
                os.replace(source, destination)
            else:
                os.replace(source, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
