"""Readers for interaction logs and item catalogs, with per-line validation.

Every reader yields :class:`Event` (or :class:`ItemInfo`) for good lines and sends
bad lines to a :class:`RejectSink`, which logs ``file:line: reason`` and writes a
reject CSV (``line,reason,raw``). Lines are read physically (one record a line,
as all supported formats are), so line numbers are exact and one bad line never
swallows its neighbours.

Formats:

* ``rees46``: header ``event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session``;
  event types view, cart, remove_from_cart, purchase.
* ``taobao``: no header; ``user_id,item_id,category_id,behavior,timestamp``; behaviors pv, cart, fav, buy.
* ``movielens``: ``ratings.csv`` (userId,movieId,rating,timestamp); a rating >= ``min_rating``
  becomes ``rated_high``, else ``rated_low``.
* ``generic``: any CSV with a header and a column mapping (``user``, ``item``, ``event``, ``ts`` and
  optional side fields), timestamps as unix seconds or ISO-8601.

Catalogs (``ItemInfo``): ``movielens-movies`` (movies.csv) and ``generic`` with a mapping.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024
MAX_FIELD_CHARS = 4096
SIDE_FIELDS = ("category", "brand", "shop", "price", "market", "category_code")

# canonical event types and which one marks a booking/purchase
PURCHASE = "purchase"
EVENT_ALIASES = {
    "rees46": {"view": "view", "cart": "cart", "remove_from_cart": "remove_from_cart", "purchase": PURCHASE},
    "taobao": {"pv": "view", "cart": "cart", "fav": "fav", "buy": PURCHASE},
}


class IngestError(ValueError):
    """A bad input row; ``str()`` names the file and line."""

    def __init__(self, path: str | Path, line: int, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{path}:{line}: {reason}")


@dataclass(frozen=True)
class Event:
    user: str
    item: str
    event_type: str
    ts: int  # unix seconds
    line: int
    side: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class ItemInfo:
    item: str
    side: dict
    line: int


class RejectSink:
    """Collects bad rows: logs them (the first ``log_first`` in full) and writes a reject CSV."""

    def __init__(self, source: str | Path, reject_path: str | Path | None, log_first: int = 20):
        self.source = str(source)
        self.reject_path = Path(reject_path) if reject_path else None
        self.log_first = log_first
        self.count = 0
        self.reasons: dict[str, int] = {}
        self._fh = None
        self._writer = None

    def reject(self, line: int, reason: str, raw: str) -> None:
        self.count += 1
        key = reason.split(":")[0]
        self.reasons[key] = self.reasons.get(key, 0) + 1
        err = IngestError(self.source, line, reason)
        if self.count <= self.log_first:
            logger.warning("rejected %s", err)
        elif self.count == self.log_first + 1:
            logger.warning("more rejected rows in %s; see %s", self.source, self.reject_path)
        if self.reject_path is not None:
            if self._fh is None:
                self.reject_path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.reject_path, "w", newline="", encoding="utf-8")
                self._writer = csv.writer(self._fh)
                self._writer.writerow(["line", "reason", "raw"])
            safe_raw = raw.replace("\x00", "\\x00")[:MAX_FIELD_CHARS]
            self._writer.writerow([line, reason, safe_raw])

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def line_text(lineno: int, raw: bytes, sink: RejectSink) -> str | None:
    """The text of one physical line (``raw``, its newline included), or None: rejected when too long, not
    UTF-8 or holding a NUL byte; skipped when blank."""
    if len(raw) > MAX_LINE_BYTES:
        sink.reject(lineno, f"line too long: {len(raw)} bytes > {MAX_LINE_BYTES}", raw[:200].decode("utf-8", "replace"))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        sink.reject(lineno, f"not UTF-8: {exc.reason} at byte {exc.start}", raw.decode("utf-8", "replace"))
        return None
    text = text.rstrip("\r\n")
    if "\x00" in text:
        sink.reject(lineno, "NUL byte in line", text)
        return None
    return text if text.strip() else None


def iter_lines(path: str | Path, sink: RejectSink) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for decodable, NUL-free, bounded lines; reject the rest."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = line_text(lineno, raw, sink)
            if text is not None:
                yield lineno, text


def split_csv(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text)))


def parse_int_id(value: str, name: str) -> str:
    v = value.strip()
    if not v:
        raise ValueError(f"empty {name}")
    try:
        int(v)
    except ValueError:
        raise ValueError(f"unparsable {name} {v[:40]!r}: expected an integer id") from None
    return str(int(v))


def parse_text_id(value: str, name: str) -> str:
    v = value.strip()
    if not v:
        raise ValueError(f"empty {name}")
    if len(v) > 512:
        raise ValueError(f"{name} too long ({len(v)} chars > 512)")
    return v


def parse_unix(value: str) -> int:
    v = value.strip()
    try:
        ts = float(v)
    except ValueError:
        raise ValueError(f"unparsable timestamp {v[:40]!r}: expected unix seconds") from None
    if not math.isfinite(ts) or ts < 0 or ts > 4_102_444_800:  # 2100-01-01
        raise ValueError(f"timestamp out of range: {v[:40]!r}")
    return int(ts)


def parse_iso(value: str) -> int:
    v = value.strip()
    if v.endswith(" UTC"):
        v = v[:-4] + "+00:00"
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise ValueError(
            f"unparsable time {value.strip()[:40]!r}: expected ISO-8601 like '2019-10-01 00:00:00 UTC'"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def parse_time(value: str) -> int:
    v = value.strip()
    if v.replace(".", "", 1).isdigit():
        return parse_unix(v)
    return parse_iso(v)


def price_bucket(price: float | None) -> str | None:
    """Log2 buckets: '0', '1-2', '2-4', ... ('unknown' for None)."""
    if price is None:
        return None
    if price < 1:
        return "0-1"
    lo = 2 ** int(math.floor(math.log2(price)))
    return f"{lo}-{lo * 2}"


def _clean(value: str) -> str | None:
    v = value.strip()
    if not v:
        return None
    if len(v) > MAX_FIELD_CHARS:
        raise ValueError(f"field too long ({len(v)} chars > {MAX_FIELD_CHARS})")
    return v


def _parse_price(value: str) -> float | None:
    v = value.strip()
    if not v:
        return None
    try:
        p = float(v)
    except ValueError:
        raise ValueError(f"unparsable price {v[:40]!r}") from None
    if not math.isfinite(p) or p < 0:
        raise ValueError(f"price out of range: {v[:40]!r}")
    return p


# --------------------------------------------------------------------------- row parsers
RowParser = Callable[[list[str], int], Event]

REES46_HEADER = [
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
]
TAOBAO_COLUMNS = ["user_id", "item_id", "category_id", "behavior", "timestamp"]
MOVIELENS_HEADER = ["userId", "movieId", "rating", "timestamp"]


def _check_width(fields: list[str], n: int, names: list[str]) -> None:
    if len(fields) != n:
        raise ValueError(f"expected {n} columns ({','.join(names)}), got {len(fields)}")


def _event_type(value: str, fmt: str) -> str:
    v = value.strip()
    aliases = EVENT_ALIASES[fmt]
    if v not in aliases:
        raise ValueError(f"unknown event type {v[:40]!r} (expected one of {', '.join(aliases)})")
    return aliases[v]


def parse_rees46(f: list[str], line: int) -> Event:
    _check_width(f, 9, REES46_HEADER)
    price = _parse_price(f[6])
    code = _clean(f[4])
    side = {
        "category": _clean(f[3]),
        "category_code": code,
        "brand": _clean(f[5]),
        "price": price,
        "price_bucket": price_bucket(price),
        "market": code.split(".")[0] if code else None,
    }
    return Event(
        user=parse_int_id(f[7], "user_id"),
        item=parse_int_id(f[2], "product_id"),
        event_type=_event_type(f[1], "rees46"),
        ts=parse_iso(f[0]),
        line=line,
        side=side,
    )


def parse_taobao(f: list[str], line: int) -> Event:
    _check_width(f, 5, TAOBAO_COLUMNS)
    return Event(
        user=parse_int_id(f[0], "user_id"),
        item=parse_int_id(f[1], "item_id"),
        event_type=_event_type(f[3], "taobao"),
        ts=parse_unix(f[4]),
        line=line,
        side={"category": parse_int_id(f[2], "category_id")},
    )


def make_movielens_parser(min_rating: float = 4.0) -> RowParser:
    def parse(f: list[str], line: int) -> Event:
        _check_width(f, 4, MOVIELENS_HEADER)
        try:
            rating = float(f[2])
        except ValueError:
            raise ValueError(f"unparsable rating {f[2][:40]!r}") from None
        if not (0 <= rating <= 5):
            raise ValueError(f"rating out of range 0..5: {rating}")
        return Event(
            user=parse_int_id(f[0], "userId"),
            item=parse_int_id(f[1], "movieId"),
            event_type="rated_high" if rating >= min_rating else "rated_low",
            ts=parse_unix(f[3]),
            line=line,
            side={},
        )

    return parse


@dataclass
class ColumnMapping:
    """Maps canonical names (user or session, item, event, ts, category, brand, shop, price, market) to CSV
    columns. ``session`` (a session-id column, as in click logs without users like the RecSys Challenge 2015's)
    stands in for ``user``: each session is then one anonymous user, so its events form its own sessions."""

    columns: dict[str, str]
    event_map: dict[str, str] | None = None  # raw event value -> canonical; None: keep as is
    default_event: str = "view"

    @classmethod
    def parse(cls, spec: str, events: str | None = None) -> ColumnMapping:
        """``"user=uid,item=sku,ts=time"`` and ``"buy=purchase,click=view"``."""
        cols = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if "=" not in part:
                raise ValueError(f"bad mapping entry {part!r}: write canonical=column, e.g. user=customer_id")
            k, v = (s.strip() for s in part.split("=", 1))
            allowed = {"user", "session", "item", "event", "ts", *SIDE_FIELDS}
            if k not in allowed:
                raise ValueError(f"unknown mapping key {k!r}; allowed: {', '.join(sorted(allowed))}")
            cols[k] = v
        ev = None
        if events:
            ev = dict(p.split("=", 1) for p in events.split(",") if "=" in p)
        return cls(cols, ev)


def _column_index(header: list[str], mapping: ColumnMapping, path: str) -> dict[str, int]:
    idx = {}
    for key, col in mapping.columns.items():
        if col not in header:
            raise IngestError(path, 1, f"mapped column {col!r} (for {key}) not in header {header}; fix --map")
        idx[key] = header.index(col)
    return idx


def _mapped_side(f: list[str], idx: dict[str, int]) -> dict:
    side = {}
    for k in SIDE_FIELDS:
        if k in idx:
            side[k] = _parse_price(f[idx[k]]) if k == "price" else _clean(f[idx[k]])
    if "price" in side:
        side["price_bucket"] = price_bucket(side["price"])
    return side


def make_generic_parser(header: list[str], mapping: ColumnMapping, path: str) -> RowParser:
    idx = _column_index(header, mapping, path)
    for req in ("item", "ts"):
        if req not in idx:
            raise IngestError(path, 1, f"--map needs '{req}=<column>'")
    if ("user" in idx) == ("session" in idx):
        raise IngestError(
            path,
            1,
            "--map needs exactly one of 'user=<column>' or 'session=<column>' (a log without users: its "
            "session ids stand in for them)",
        )
    who = "user" if "user" in idx else "session"
    width = len(header)

    def parse(f: list[str], line: int) -> Event:
        _check_width(f, width, header)
        if "event" in idx:
            raw = f[idx["event"]].strip()
            if mapping.event_map is not None:
                if raw not in mapping.event_map:
                    raise ValueError(
                        f"unknown event type {raw[:40]!r} (expected one of {', '.join(mapping.event_map)})"
                    )
                etype = mapping.event_map[raw]
            else:
                if not raw:
                    raise ValueError("empty event type")
                etype = raw
        else:
            etype = mapping.default_event
        return Event(
            user=parse_text_id(f[idx[who]], who),
            item=parse_text_id(f[idx["item"]], "item"),
            event_type=etype,
            ts=parse_time(f[idx["ts"]]),
            line=line,
            side=_mapped_side(f, idx),
        )

    return parse


FORMATS = ("rees46", "taobao", "movielens", "generic")


def read_events(
    path: str | Path,
    fmt: str,
    sink: RejectSink,
    mapping: ColumnMapping | None = None,
    min_rating: float = 4.0,
) -> Iterator[Event]:
    """Yield good events of ``path``; bad lines go to ``sink``."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    lines = iter_lines(path, sink)
    parser: RowParser
    if fmt == "taobao":
        parser = parse_taobao
    else:
        first = next(lines, None)
        if first is None:
            return
        header = [h.strip().lstrip("\ufeff") for h in split_csv(first[1])]
        if fmt == "rees46":
            if header != REES46_HEADER:
                raise IngestError(
                    path, first[0], f"not a REES46 header: {header[:9]} (expected {','.join(REES46_HEADER)})"
                )
            parser = parse_rees46
        elif fmt == "movielens":
            if header != MOVIELENS_HEADER:
                raise IngestError(
                    path, first[0], f"not a MovieLens ratings header: {header} (expected {','.join(MOVIELENS_HEADER)})"
                )
            parser = make_movielens_parser(min_rating)
        else:
            if mapping is None:
                raise ValueError("format 'generic' needs a column mapping (--map user=...,item=...,ts=...)")
            parser = make_generic_parser(header, mapping, str(path))
    for lineno, text in lines:
        try:
            fields = split_csv(text)
            yield parser(fields, lineno)
        except (ValueError, csv.Error) as exc:
            sink.reject(lineno, str(exc), text)


ITEM_FORMATS = ("movielens-movies", "generic", "rees46", "taobao")


def read_items(
    path: str | Path, fmt: str, sink: RejectSink, mapping: ColumnMapping | None = None
) -> Iterator[ItemInfo]:
    """Item catalogs: ``movielens-movies``, ``generic`` (needs ``item=`` in the mapping), or the side
    info of every item in a ``rees46``/``taobao`` event log (one :class:`ItemInfo` per row, events
    themselves ignored), so that items can be known before their first event."""
    path = Path(path)
    if fmt in ("rees46", "taobao"):
        for e in read_events(path, fmt, sink):
            yield ItemInfo(e.item, e.side, e.line)
        return
    if fmt not in ITEM_FORMATS:
        raise ValueError(f"unknown item catalog format {fmt!r}; choose one of {', '.join(ITEM_FORMATS)}")
    lines = iter_lines(path, sink)
    first = next(lines, None)
    if first is None:
        return
    header = [h.strip().lstrip("\ufeff") for h in split_csv(first[1])]
    if fmt == "movielens-movies":
        if header != ["movieId", "title", "genres"]:
            raise IngestError(
                path, first[0], f"not a MovieLens movies header: {header} (expected movieId,title,genres)"
            )
        for lineno, text in lines:
            try:
                f = split_csv(text)
                _check_width(f, 3, header)
                genres = [g for g in f[2].split("|") if g and g != "(no genres listed)"]
                yield ItemInfo(
                    parse_int_id(f[0], "movieId"),
                    {
                        "title": _clean(f[1]),
                        "category": genres[0] if genres else None,
                        "genres": genres,
                        "market": genres[0] if genres else None,
                    },
                    lineno,
                )
            except (ValueError, csv.Error) as exc:
                sink.reject(lineno, str(exc), text)
        return
    if fmt != "generic" or mapping is None or "item" not in mapping.columns:
        raise ValueError(
            "item catalogs: use format 'movielens-movies', 'rees46', 'taobao', or 'generic' with "
            "--map item=<column>,category=..."
        )
    idx = _column_index(header, mapping, str(path))
    for lineno, text in lines:
        try:
            f = split_csv(text)
            _check_width(f, len(header), header)
            yield ItemInfo(parse_text_id(f[idx["item"]], "item"), _mapped_side(f, idx), lineno)
        except (ValueError, csv.Error) as exc:
            sink.reject(lineno, str(exc), text)
