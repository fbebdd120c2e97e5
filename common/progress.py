"""One progress-bar factory for every long job (ingest, scores, EGES).

On a terminal it is a normal tqdm bar. When stderr is not a terminal (CI logs, ``make demo >
log``), it redraws at most every ``GRAPHRECALL_PROGRESS_SECONDS`` (default 30) seconds, so that a
log keeps a readable trail of rates instead of thousands of carriage-return updates.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm


def progress_bar(*, enabled: bool = True, **kwargs) -> tqdm:
    if not enabled:
        kwargs["disable"] = True
    elif not sys.stderr.isatty():
        kwargs.setdefault("mininterval", float(os.environ.get("GRAPHRECALL_PROGRESS_SECONDS", "30")))
    kwargs.setdefault("leave", False)
    return tqdm(**kwargs)
