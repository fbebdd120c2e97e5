"""A columnar reader for big REES46 and Taobao logs: the same events, side info and rejects as
:func:`ingest.formats.read_events`, without a Python object per row.

The file is read in blocks of whole lines. In a block without quotes or NUL bytes, whose carriage returns
all end lines (``\r\n``), and that decodes as UTF-8, the fields are cut with numpy (the positions of its newlines and commas) and checked
column by column against forms whose row-parser result is known: canonical integer ids, known event
types, valid ``YYYY-MM-DD HH:MM:SS UTC`` times, plain decimal prices, fields without surrounding
whitespace, lines of the expected width. Rows that pass are converted in bulk (times by calendar
arithmetic, prices by numpy's correctly rounded parse). Every other row, and every row of a block that is
not plain, goes through the row parser itself, so it is accepted or rejected exactly as
:func:`read_events` would, with the same reason, line number and reject line.
``tests/test_columnar.py`` checks the equality on logs full of bad and odd rows, cut into tiny blocks.
"""

from __future__ import annotations

import csv
import logging
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..common.progress import progress_bar
from .formats import (
    EVENT_ALIASES,
    MAX_FIELD_CHARS,
    MAX_LINE_BYTES,
    REES46_HEADER,
    Event,
    RejectSink,
    line_text,
    parse_rees46,
    parse_taobao,
    price_bucket,
    read_events,
    split_csv,
)
from .sessions import columns_frame, merge_side

logger = logging.getLogger(__name__)

COLUMNAR_FORMATS = ("rees46", "taobao")
BLOCK_BYTES = 8 << 20  # bytes read at a time (whole lines), about 60k REES46 rows
READ_THREADS = 2  # blocks converted at a time: the server waits while a file is read, so both cores read
FIELD_CAP = 256  # longer fields (rare) take the row parser
_MAX_UNIX = 4_102_444_800  # parse_unix's bound (2100-01-01)
SIDE_COLUMNS = {
    "rees46": ("category", "category_code", "brand", "price", "price_bucket", "market"),
    "taobao": ("category",),
}


def read_event_columns(
    path: str | Path,
    fmt: str,
    sink: RejectSink,
    *,
    block_bytes: int = BLOCK_BYTES,
    progress: bool = False,
    threads: int = READ_THREADS,
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """``(events, side)``: the good events of ``path`` as a frame (``user``, ``item``, ``type``, ``ts``,
    ``line``, in line order; one ``str`` object per distinct id) and each item's side info (the last non-null
    value of each field in line order, as :func:`ingest.sessions.merge_side` keeps it). Bad lines go to
    ``sink`` in line order. ``threads`` blocks are cut into columns at a time (the same output for any
    value)."""
    if fmt not in COLUMNAR_FORMATS:
        raise ValueError(f"the columnar reader reads {', '.join(COLUMNAR_FORMATS)}, not {fmt!r}; use read_events")
    _check_read_args(block_bytes, threads)
    path = Path(path)
    reader = _Reader(fmt, sink)
    with open(path, "rb") as fh:
        if not _plain_header(fh, fmt):
            return read_event_rows(path, fmt, sink, progress=progress)  # not a plain header: rows decide
        bar = progress_bar(unit="rows", desc=f"read {path.name}", enabled=progress)
        for data, line, converted in _converted_blocks(reader, fh, block_bytes, threads):
            bar.update(reader.block(data, line, converted))
        bar.close()
    logger.info("%s: %d lines read by columns, %d by the row parser", path, reader.n_fast, reader.n_slow)
    return reader.result(threads)


def _check_read_args(block_bytes: int, threads: int) -> None:
    if block_bytes < 1:
        raise ValueError(f"block_bytes must be >= 1, got {block_bytes}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1 (blocks converted at a time), got {threads}")


def _converted_blocks(reader: _Reader, fh, block_bytes: int, threads: int) -> Iterator[tuple[bytes, int, _Converted]]:
    """``(block, its first line, reader.convert(block))`` in file order, ``threads`` conversions running
    ahead of the caller (numpy releases the GIL for nearly all of them): at most ``threads + 1`` blocks
    are held at once."""
    blocks = _line_blocks(fh, block_bytes, 2 if reader.fmt == "rees46" else 1)
    if threads == 1:
        for data, line in blocks:
            yield data, line, reader.convert(data, line)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="graphrecall-read") as pool:
        ahead: deque = deque()
        for data, line in blocks:
            ahead.append((data, line, pool.submit(reader.convert, data, line)))
            if len(ahead) > threads:
                data, line, job = ahead.popleft()
                yield data, line, job.result()
        while ahead:
            data, line, job = ahead.popleft()
            yield data, line, job.result()


def iter_event_frames(
    path: str | Path,
    fmt: str,
    sink: RejectSink,
    side: dict[str, dict],
    *,
    mapping=None,
    min_rating: float = 4.0,
    block_bytes: int = BLOCK_BYTES,
    rows_per_frame: int = 100_000,
    threads: int = READ_THREADS,
) -> Iterator[pd.DataFrame]:
    """What :func:`read_frame` reads, in bounded memory: yields the good events frame by frame (same
    columns, line order) and folds each item's side info into ``side`` as it goes. REES46 and Taobao logs
    without a column mapping are read by columns, a block of lines a frame; other logs, and those whose
    header is not plain, by the row reader, ``rows_per_frame`` events a frame. ``threads`` blocks are cut
    into columns at a time, so up to ``threads + 1`` blocks are held at once."""
    if rows_per_frame < 1:
        raise ValueError(f"rows_per_frame must be >= 1, got {rows_per_frame}")
    _check_read_args(block_bytes, threads)
    path = Path(path)
    plain = False
    if fmt in COLUMNAR_FORMATS and mapping is None:
        reader = _Reader(fmt, sink)
        reader.side = side
        with open(path, "rb") as fh:
            plain = _plain_header(fh, fmt)
            if plain:
                for data, line, converted in _converted_blocks(reader, fh, block_bytes, threads):
                    if reader.block(data, line, converted):
                        yield reader.take()
    if not plain:
        events: list[Event] = []
        for ev in read_events(path, fmt, sink, mapping=mapping, min_rating=min_rating):
            merge_side(side, ev)
            events.append(ev)
            if len(events) == rows_per_frame:
                yield _frame_of(events)
                events = []
        if events:
            yield _frame_of(events)


def _frame_of(events: list[Event]) -> pd.DataFrame:
    return columns_frame(
        [e.user for e in events],
        [e.item for e in events],
        [e.event_type for e in events],
        [e.ts for e in events],
        [e.line for e in events],
    )


def _plain_header(fh, fmt: str) -> bool:
    """Reads a REES46 header line; False when it is not exactly the expected plain one (Taobao has none)."""
    if fmt != "rees46":
        return True
    first = fh.readline()
    try:
        header = [h.strip().lstrip("\ufeff") for h in first.rstrip(b"\r\n").decode("utf-8").split(",")]
    except UnicodeDecodeError:
        return False
    return header == REES46_HEADER and len(first) <= MAX_LINE_BYTES and b"\x00" not in first


def _line_blocks(fh, block_bytes: int, line: int) -> Iterator[tuple[bytes, int]]:
    """``(block, number of its first line)``: the rest of ``fh`` in blocks of whole lines (the last may lack
    its newline)."""
    carry = b""
    while True:
        block = fh.read(block_bytes)
        data = carry + block
        if not data:
            return
        if block:
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # no whole line yet: read on
                carry = data
                continue
            data, carry = data[:cut], data[cut:]
        else:
            carry = b""
        yield data, line
        line += data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def read_frame(
    path: str | Path, fmt: str, sink: RejectSink, *, mapping=None, min_rating: float = 4.0, progress: bool = False
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """``(events, side)`` of a whole file, as :func:`read_event_columns` returns them: read by columns for
    REES46 and Taobao logs without a column mapping, else by :func:`read_event_rows` (the same output)."""
    if fmt in COLUMNAR_FORMATS and mapping is None:
        return read_event_columns(path, fmt, sink, progress=progress)
    return read_event_rows(path, fmt, sink, mapping=mapping, min_rating=min_rating, progress=progress)


def read_event_rows(
    path: str | Path, fmt: str, sink: RejectSink, *, mapping=None, min_rating: float = 4.0, progress: bool = False
) -> tuple[pd.DataFrame, dict[str, dict]]:
    """What :func:`read_event_columns` returns, read by the row reader (:func:`read_events`, any format):
    columns of interned strings, not one Event (with its own side dict) per row. After reading 10M events a
    process held 11.7 GiB with Events and 2.5 GiB with these columns."""
    import sys

    side: dict[str, dict] = {}
    cols: dict[str, list] = {"user": [], "item": [], "type": [], "ts": [], "line": []}
    bar = progress_bar(unit="rows", desc=f"read {Path(path).name}", enabled=progress)
    for ev in read_events(path, fmt, sink, mapping=mapping, min_rating=min_rating):
        merge_side(side, ev)
        cols["user"].append(sys.intern(ev.user))
        cols["item"].append(sys.intern(ev.item))
        cols["type"].append(sys.intern(ev.event_type))
        cols["ts"].append(ev.ts)
        cols["line"].append(ev.line)
        bar.update(1)
    bar.close()
    return columns_frame(cols["user"], cols["item"], cols["type"], cols["ts"], cols["line"]), side


# --------------------------------------------------------------------------- fields as byte matrices
class _Field:
    """One column of a block's accepted rows: ``m`` (rows x width bytes, zero-padded) and ``n`` (lengths)."""

    def __init__(self, buf: np.ndarray, left: np.ndarray, right: np.ndarray):
        self.n = right - left
        width = int(min(self.n.max(initial=0), FIELD_CAP))
        width = max(width, 1)
        cols = np.arange(width)
        inside = cols < self.n[:, None]
        self.m = np.where(inside, buf[np.minimum(left[:, None] + cols, len(buf) - 1)], 0).astype(np.uint8)
        self.inside = inside

    def fits(self) -> np.ndarray:
        return self.n <= FIELD_CAP

    def bytes(self) -> np.ndarray:
        """As a numpy ``S`` array (trailing zero bytes are padding)."""
        return np.ascontiguousarray(self.m).view(f"S{self.m.shape[1]}").ravel()

    def digits(self) -> np.ndarray:
        is_digit = (self.m >= 48) & (self.m <= 57)
        return (is_digit | ~self.inside).all(axis=1) & (self.n >= 1) & self.fits()

    def canonical_int(self, max_len: int = 18) -> np.ndarray:
        """What parse_int_id returns unchanged: digits without a leading zero (or just "0")."""
        return self.digits() & (self.n <= max_len) & ((self.m[:, 0] != 48) | (self.n == 1))

    def int_value(self) -> np.ndarray:
        """Each row's digits as an integer (rows of at most 18 digits; checked elsewhere)."""
        power = self.n[:, None] - 1 - np.arange(self.m.shape[1])
        digit = np.where(self.inside, self.m.astype(np.int64) - 48, 0)
        return (digit * np.where(power >= 0, 10 ** np.clip(power, 0, 18), 0)).sum(axis=1)

    def number(self, a: int, b: int) -> np.ndarray:
        """The decimal number in bytes ``a:b`` of each row (digits checked elsewhere)."""
        return ((self.m[:, a:b].astype(np.int64) - 48) * 10 ** np.arange(b - a - 1, -1, -1)).sum(axis=1)

    def last(self) -> np.ndarray:
        """Each row's last byte (the first padding byte, 0, where the row is empty)."""
        return self.m[np.arange(len(self.n)), np.clip(self.n - 1, 0, self.m.shape[1] - 1)]

    def unpadded(self) -> np.ndarray:
        """No whitespace to strip: empty, or printable ASCII other than space at both ends."""
        first, last = self.m[:, 0], self.last()
        edge = (first >= 33) & (first <= 126) & (last >= 33) & (last <= 126)
        return ((self.n == 0) | edge) & self.fits() & (self.n <= MAX_FIELD_CHARS)


def _iso_seconds(f: _Field) -> tuple[np.ndarray, np.ndarray]:
    """``YYYY-MM-DD HH:MM:SS UTC`` rows that ``datetime.fromisoformat`` accepts, and their unix seconds."""
    pattern = np.frombuffer(b"0000-00-00 00:00:00 UTC", dtype=np.uint8)
    if f.m.shape[1] < 23:
        return np.zeros(len(f.n), bool), np.zeros(len(f.n), np.int64)
    m = f.m[:, :23]
    digit_at = pattern == 48
    ok = (
        (f.n == 23)
        & ((m[:, digit_at] >= 48) & (m[:, digit_at] <= 57)).all(axis=1)
        & (m[:, ~digit_at] == pattern[~digit_at]).all(axis=1)
    )
    y, mo, d = f.number(0, 4), f.number(5, 7), f.number(8, 10)
    h, mi, s = f.number(11, 13), f.number(14, 16), f.number(17, 19)
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    dim = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(mo, 0, 12)] + (leap & (mo == 2))
    ok &= (y >= 1) & (mo >= 1) & (mo <= 12) & (d >= 1) & (d <= dim) & (h <= 23) & (mi <= 59) & (s <= 59)
    yy = y - (mo <= 2)  # days from civil (H. Hinnant's algorithm), exact integers
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * np.where(mo > 2, mo - 3, mo + 9) + 2) // 5 + d - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return ok, days * 86400 + h * 3600 + mi * 60 + s


def _plain_decimal(f: _Field) -> np.ndarray:
    """Digits with at most one inner dot (what float() reads the same as numpy), or empty."""
    dot = (f.m == 46) & f.inside
    digit = (f.m >= 48) & (f.m <= 57)
    form = (digit | dot | ~f.inside).all(axis=1) & (dot.sum(axis=1) <= 1) & (f.m[:, 0] != 46) & (f.last() != 46)
    return (f.n == 0) | (form & (f.n <= 30))


# --------------------------------------------------------------------------- the reader
class _Converted(NamedTuple):
    starts: np.ndarray  # each line's first byte in the block
    ends: np.ndarray  # each line's newline (or the block's end)
    lines: np.ndarray  # each line's number in the file
    ok: np.ndarray  # the lines read by columns
    fast: dict | None  # their columns (user, item, type as bytes; ts), None when there are none
    found: dict  # their side info: field -> (items, lines, values), each item's last value in the block


class _Reader:
    def __init__(self, fmt: str, sink: RejectSink):
        self.fmt, self.sink = fmt, sink
        self.width = 9 if fmt == "rees46" else 5
        self.used = 8 if fmt == "rees46" else 5  # REES46's user_session is not read
        self.parse = parse_rees46 if fmt == "rees46" else parse_taobao
        aliases = EVENT_ALIASES[fmt]
        self.type_raw = [k.encode() for k in aliases]
        self.type_bytes = np.array([t.encode() for t in aliases.values()], dtype="S")
        self.fields = SIDE_COLUMNS[fmt]
        self.parts: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "type", "ts", "line")}
        self.side: dict[str, dict] = {}
        self.n_fast = self.n_slow = 0

    def convert(self, data: bytes, first_line: int) -> _Converted:
        """The numpy part of reading one block of whole lines: its line bounds, the rows the checks accept
        and their columns. It reads nothing of the reader but its format, so blocks convert in threads."""
        buf = np.frombuffer(data, dtype=np.uint8)
        nl = np.flatnonzero(buf == 10)
        ends = nl if data.endswith(b"\n") else np.append(nl, len(data))
        starts = np.concatenate([[0], ends[:-1] + 1])
        lines = first_line + np.arange(len(ends), dtype=np.int64)
        ok = np.zeros(len(ends), dtype=bool)
        fast = None
        cr = np.flatnonzero(buf == 13) if b"\r" in data else np.zeros(0, np.int64)
        crlf = bool(len(cr)) and cr[-1] + 1 < len(buf) and bool((buf[cr + 1] == 10).all())  # '\r' only in "\r\n"
        if b"\x00" not in data and b'"' not in data and (crlf or not len(cr)):
            try:
                data.decode("utf-8")
                plain = True
            except UnicodeDecodeError:
                plain = False
            if plain:
                commas = np.flatnonzero(buf == 44)
                line_of = np.searchsorted(ends, commas)
                per_line = np.bincount(line_of, minlength=len(ends))
                ok = (per_line == self.width - 1) & ((ends - starts + (ends < len(data))) <= MAX_LINE_BYTES)
                rows = np.flatnonzero(ok)
                if len(rows):
                    at = commas[ok[line_of]].reshape(len(rows), self.width - 1)
                    left = np.concatenate([starts[rows, None], at + 1], axis=1)
                    content_end = ends[rows] - (buf[np.maximum(ends[rows] - 1, 0)] == 13) if crlf else ends[rows]
                    right = np.concatenate([at, content_end[:, None]], axis=1)
                    good, fast = self._convert([_Field(buf, left[:, k], right[:, k]) for k in range(self.used)])
                    ok[rows[~good]] = False
                    fast = {k: v[good] for k, v in fast.items()}
        found: dict[str, tuple[list, list, list]] = {}
        if fast is not None and len(fast["ts"]):
            found = self._fast_side(fast, lines[ok])
            fast = {"user": fast["user"], "item": fast["item"], "type": self.type_bytes[fast["type"]], "ts": fast["ts"]}
        else:
            fast = None
        return _Converted(starts, ends, lines, ok, fast, found)

    def block(self, data: bytes, first_line: int, converted: _Converted | None = None) -> int:
        """Read one block of whole lines (``converted``: its :meth:`convert`, when done already); blocks must
        come in line order. Returns its number of good events."""
        starts, ends, lines, ok, fast, found = converted if converted is not None else self.convert(data, first_line)
        self.n_fast += int(ok.sum())
        self.n_slow += int(len(ok) - ok.sum())
        slow = [
            ev
            for r in np.flatnonzero(~ok)
            if (ev := self._one(data[starts[r] : ends[r] + (1 if ends[r] < len(data) else 0)], int(lines[r])))
            is not None
        ]
        return self._keep(fast, lines[ok], slow, found)

    def _convert(self, f: list[_Field]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Rows the checks accept (the row parser would return exactly these values), and their columns."""
        if self.fmt == "rees46":
            time_, type_, item, cat, code, brand, price, user = f[:8]
            good, ts = _iso_seconds(time_)
            good &= cat.unpadded() & code.unpadded() & brand.unpadded() & _plain_decimal(price)
        else:
            user, item, cat, type_, time_ = f
            good = cat.canonical_int() & time_.digits() & (time_.n <= 10)  # parse_unix: float() of digits, exact
            ts = np.where(good, time_.int_value(), 0)
            good &= ts <= _MAX_UNIX
        good &= user.canonical_int() & item.canonical_int()
        raw_type = type_.bytes()
        type_code = np.full(len(raw_type), -1)
        for c, name in enumerate(self.type_raw):
            type_code[(raw_type == name) & (type_.n == len(name))] = c
        good &= type_code >= 0
        out = {"user": user.bytes(), "item": item.bytes(), "type": type_code, "ts": ts.astype(np.int64)}
        if self.fmt == "rees46":
            for name, col in (("category", cat), ("category_code", code), ("brand", brand)):
                out[name] = col.bytes()
                out[name + "?"] = col.n > 0
            read = good & (price.n > 0)  # other rows' bytes may not parse: "0" stands in, then NaN
            out["price"] = np.where(read, np.where(read, price.bytes(), b"0").astype(np.float64), np.nan)
        else:
            out["category"], out["category?"] = cat.bytes(), np.ones(len(cat.n), bool)
        return good, out

    def _one(self, raw: bytes, line: int) -> Event | None:
        """One line exactly as read_events takes it: iter_lines' checks, then the row parser."""
        text = line_text(line, raw, self.sink)
        if text is None:
            return None
        try:
            return self.parse(split_csv(text), line)
        except (ValueError, csv.Error) as exc:
            self.sink.reject(line, str(exc), text)
            return None

    def _keep(self, fast: dict | None, fast_lines: np.ndarray, slow: list[Event], found: dict) -> int:
        """Append the block's events in line order and fold its side info (``found``: the fast rows')
        into ``self.side``."""
        n_fast = 0 if fast is None else len(fast_lines)
        user = [fast["user"]] if n_fast else []
        item = [fast["item"]] if n_fast else []
        typ = [fast["type"]] if n_fast else []
        ts, line = ([fast["ts"]], [fast_lines]) if n_fast else ([], [])
        if slow:
            user.append(np.array([e.user.encode() for e in slow], dtype="S"))
            item.append(np.array([e.item.encode() for e in slow], dtype="S"))
            typ.append(np.array([e.event_type.encode() for e in slow], dtype="S"))
            ts.append(np.array([e.ts for e in slow], dtype=np.int64))
            line.append(np.array([e.line for e in slow], dtype=np.int64))
        if not line:
            return 0
        if slow:  # merge the fast rows and the row parser's by line
            lines = np.concatenate(line)
            order = np.argsort(lines, kind="stable")
            for key, parts in (("user", user), ("item", item), ("type", typ), ("ts", ts)):
                self.parts[key].append(np.concatenate(parts)[order])
            self.parts["line"].append(lines[order])
        else:  # fast rows only: in line order already
            for key, parts in (("user", user), ("item", item), ("type", typ), ("ts", ts), ("line", line)):
                self.parts[key].append(parts[0])
        self._fold_side(found, slow)
        return sum(len(x) for x in line)

    def _fast_side(self, fast: dict, fast_lines: np.ndarray) -> dict[str, tuple[list, list, list]]:
        """Field -> (items, lines, values): each item's last non-null value of the field among the fast
        rows of one block (an item once a field)."""
        found: dict[str, tuple[list, list, list]] = {}
        uniq, inv = np.unique(fast["item"], return_inverse=True)  # one sort of the block's item ids
        names = np.array([u.decode("ascii") for u in uniq.tolist()], dtype=object)
        for f in self.fields:
            if f in ("price_bucket", "market"):
                continue
            has = ~np.isnan(fast["price"]) if f == "price" else fast[f + "?"]
            rows = np.flatnonzero(has)
            if not len(rows):
                continue
            last = np.full(len(uniq), -1, dtype=np.int64)
            np.maximum.at(last, inv[rows], rows)  # each item's last row with a value
            with_value = np.flatnonzero(last >= 0)
            sel = last[with_value]
            values = fast["price"][sel].tolist() if f == "price" else [v.decode("utf-8") for v in fast[f][sel].tolist()]
            found[f] = (names[with_value].tolist(), fast_lines[sel].tolist(), values)
        return found

    def _fold_side(self, found: dict[str, tuple[list, list, list]], slow: list[Event]) -> None:
        """Each item's last non-null value per field in this block (the fast rows' ``found``, and the slow
        rows by line), over what earlier blocks left."""
        if slow:  # merge the row parser's events by line
            latest = {(item, f): (line, v) for f, cols in found.items() for item, line, v in zip(*cols)}
            for e in slow:  # in line order
                for f, v in e.side.items():
                    if v is not None and f not in ("price_bucket", "market"):
                        old = latest.get((e.item, f))
                        if old is None or old[0] < e.line:
                            latest[(e.item, f)] = (e.line, v)
            found = {}
            for (item, f), (line, v) in latest.items():
                cols = found.setdefault(f, ([], [], []))
                cols[0].append(item)
                cols[1].append(line)
                cols[2].append(v)
        # price_bucket and market are non-null exactly where price and category_code are (the parser derives
        # them), so their last values follow those
        side = self.side
        for f, (items, _, values) in found.items():
            derived = {"price": "price_bucket", "category_code": "market"}.get(f)
            derived = derived if derived in self.fields else None
            for item, v in zip(items, values):
                props = side.get(item)
                if props is None:
                    props = side[item] = {}
                props[f] = v
                if derived == "price_bucket":
                    props[derived] = price_bucket(v)
                elif derived == "market":
                    props[derived] = v.split(".")[0]

    def take(self) -> pd.DataFrame:
        """The events read since the last call, as a frame; they are dropped from the reader."""
        return self.result()[0]

    def result(self, threads: int = 1) -> tuple[pd.DataFrame, dict[str, dict]]:
        """Every event read (not taken) as a frame, and the side info; the id columns are coded
        ``threads`` at a time."""

        def strings(key: str) -> np.ndarray:
            raw = np.concatenate(self.parts[key]) if self.parts[key] else np.zeros(0, "S1")
            uniq, inv = np.unique(raw, return_inverse=True)
            names = np.array([u.decode("utf-8") for u in uniq.tolist()], dtype=object)
            return names[inv]  # one str object per distinct value

        keys = ("user", "item", "type")
        if threads > 1:
            with ThreadPoolExecutor(min(threads, len(keys)), thread_name_prefix="graphrecall-read") as pool:
                cols = dict(zip(keys, pool.map(strings, keys)))
        else:
            cols = {key: strings(key) for key in keys}
        for key in ("ts", "line"):
            cols[key] = np.concatenate(self.parts[key]) if self.parts[key] else np.zeros(0, np.int64)
        self.parts = {k: [] for k in ("user", "item", "type", "ts", "line")}
        return columns_frame(cols["user"], cols["item"], cols["type"], cols["ts"], cols["line"]), self.side
