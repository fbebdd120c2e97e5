"""Settings defined once: each stage's dataclass carries its defaults and help, and the CLI's flags and the
defaults shown in ``--help`` come from it (:func:`add_options`, :func:`from_args`).

A field made with :func:`setting` names its flag; a bool that defaults to True is turned off by its flag
(``--no-...``); a tuple of strings is given as a comma list.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    flag: str,
    default_factory: Any = dataclasses.MISSING,
    choices: tuple | None = None,
    type: Any = None,
    shown: str | None = None,
):
    """A dataclass field with its command-line ``flag`` and ``help``. ``shown``: the default as ``--help``
    prints it, when the value itself is not telling (e.g. one read from the environment)."""
    meta = {"help": help, "flag": flag, "choices": choices, "type": type, "shown": shown}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def add_options(group, cls, only: tuple[str, ...] | None = None) -> None:
    """One option per :func:`setting` field of ``cls`` (those named in ``only``, when given); every option's
    value is None unless given, so that :func:`from_args` keeps the dataclass's default."""
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "flag" not in meta or (only is not None and f.name not in only):
            continue
        default = _default(f)
        shown = meta["shown"] or (",".join(default) if isinstance(default, tuple) else default)
        dest = f"{cls.__name__}.{f.name}"
        if isinstance(default, bool):
            group.add_argument(
                meta["flag"], dest=dest, action="store_const", const=not default, default=None, help=meta["help"]
            )
            continue
        kind = meta["type"] or (str if isinstance(default, tuple) or default is None else type(default))
        group.add_argument(
            meta["flag"],
            dest=dest,
            type=kind,
            choices=meta["choices"],
            default=None,
            metavar=None if meta["choices"] else meta["flag"].lstrip("-").upper().replace("-", "_"),
            help=f"{meta['help']} (default {shown})",
        )


def from_args(cls, args: argparse.Namespace, **overrides):
    """An instance of ``cls`` with the options :func:`add_options` added that were given on the command line."""
    values = {}
    for f in dataclasses.fields(cls):
        got = getattr(args, f"{cls.__name__}.{f.name}", None)
        if got is None:
            continue
        values[f.name] = (
            tuple(x.strip() for x in got.split(",") if x.strip()) if isinstance(_default(f), tuple) else got
        )
    return cls(**{**values, **overrides})
