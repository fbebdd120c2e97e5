"""Folders of saved versions, the newest named by a ``CURRENT`` file: how the API's snapshot and the Faiss
index are saved, so that readers (memory-mapping API workers) never see half of a version.

A version is written into ``<name>.tmp``, renamed whole, and only then does ``CURRENT`` move (an atomic
replace). Older versions beyond ``keep`` are removed; a process that still maps one of their files keeps
it until it lets go (the files stay alive while mapped).
"""

from __future__ import annotations

import shutil
from pathlib import Path


def new_version(directory: str | Path, name: str) -> Path:
    """An empty ``<name>.tmp`` folder under ``directory`` to write a version into."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (name + ".tmp")
    tmp.mkdir()
    return tmp


def publish(tmp: Path, keep: int) -> Path:
    """Make the version written into ``tmp`` (from :func:`new_version`) the current one; remove the oldest
    beyond ``keep`` versions. Returns the version's folder."""
    d, name = tmp.parent, tmp.name[: -len(".tmp")]
    tmp.rename(d / name)
    (d / "CURRENT.tmp").write_text(name)
    (d / "CURRENT.tmp").replace(d / "CURRENT")
    saved = sorted(
        (p for p in d.iterdir() if p.is_dir() and p.name.startswith("v") and not p.name.endswith(".tmp")),
        key=lambda p: p.stat().st_mtime,
    )
    for old in saved[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return d / name


def current(directory: str | Path) -> Path | None:
    """The current version's folder, or None when ``directory`` holds none."""
    d = Path(directory)
    try:
        return d / (d / "CURRENT").read_text().strip()
    except FileNotFoundError:
        return None
