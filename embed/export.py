"""Item vectors any tool can load: gensim ``KeyedVectors`` (``KeyedVectors.load``) and the word2vec text
format (``KeyedVectors.load_word2vec_format``, and most embedding tools), one vector per item id."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from gensim.models import KeyedVectors

from .index import ItemVectorIndex

logger = logging.getLogger(__name__)

FORMATS = ("keyedvectors", "word2vec")


def keyed_vectors(index: ItemVectorIndex) -> KeyedVectors:
    """The index's vectors (unit length, as the eges channel searches them) keyed by item id; their
    ``most_similar`` ranks as the eges channel does, up to exact ties."""
    kv = KeyedVectors(vector_size=index.dim)
    kv.add_vectors([str(i) for i in index.item_ids], index.vectors)
    return kv


def export_vectors(index: ItemVectorIndex, path: str | Path, fmt: str = "keyedvectors") -> Path:
    """Write the vectors to ``path``: ``keyedvectors`` (gensim's own file, ``KeyedVectors.load(path)``) or
    ``word2vec`` (text: a header ``count dim``, then ``id v1 v2 ...`` per line). Returns ``path``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown vector format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    kv = keyed_vectors(index)
    if fmt == "keyedvectors":
        kv.save(str(path))
    else:
        kv.save_word2vec_format(str(path), binary=False)
    secs = time.perf_counter() - t0
    logger.info(
        "wrote %d vectors (%d dims) as %s to %s in %.1fs (%.0f vectors/s)",
        len(index.item_ids),
        index.dim,
        fmt,
        path,
        secs,
        len(index.item_ids) / max(secs, 1e-9),
    )
    return path
