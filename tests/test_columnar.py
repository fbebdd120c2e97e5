"""The columnar reader reads exactly what the row reader reads: events, side info and rejects."""

import random

import numpy as np
import pandas as pd
import pytest

from graphrecall.ingest.columnar import iter_event_frames, read_event_columns, read_event_rows
from graphrecall.ingest.formats import RejectSink

REES46_HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
GOOD_TIMES = [
    "2019-10-01 00:00:00 UTC",
    "2019-10-01 02:59:59 UTC",
    "2020-02-29 23:59:59 UTC",
    "1969-12-31 23:59:59 UTC",
    "2000-01-01 12:00:00 UTC",
]
ODD_TIMES = [
    "2019-02-30 00:00:00 UTC",
    "2019-13-01 00:00:00 UTC",
    "2019-10-01 24:00:00 UTC",
    "2019-10-01 00:00:60 UTC",
    "2019-10-01T00:00:00 UTC",
    " 2019-10-01 00:00:00 UTC",
    "2019-10-01 00:00:00",
    "yesterday",
    "",
    "2019-10-01 00:00:00+03:00",
    "0000-01-01 00:00:00 UTC",
    "2100-02-29 00:00:00 UTC",
]
GOOD_IDS = ["1", "0", "1003461", "512475445", "999999999999999999"]
ODD_IDS = ["007", "-5", " 5", "5 ", "", "x1", "1_000", "+3", "1.0", "12345678901234567890"]
FIELDS = [
    "",
    "2053013555631882655",
    "electronics.smartphone",
    "apple",
    "a",
    ".x",
    "a..b",
    "café",
    "ünï",
    " padded ",
    "tab\tinside",
    "x" * 300,
    "y" * 5000,
]
PRICES = [
    "",
    "0",
    "0.5",
    "1",
    "2",
    "3.999",
    "1024.00",
    "154.44",
    "2574.07",
    "abc",
    "-1",
    "inf",
    "nan",
    "1e3",
    ".5",
    "5.",
    "1.2.3",
    "9" * 31,
]


def _rees46_line(rng: random.Random) -> str:
    def pick(good, odd, p_odd=0.15):
        return rng.choice(odd) if rng.random() < p_odd else rng.choice(good)

    fields = [
        pick(GOOD_TIMES, ODD_TIMES),
        pick(["view", "cart", "purchase", "remove_from_cart"], ["click", "View", ""]),
        pick(GOOD_IDS[:4] + [str(rng.randint(1, 40))] * 6, ODD_IDS),
        rng.choice(FIELDS[:5] + FIELDS[5:] * (rng.random() < 0.2)),
        pick(["electronics.smartphone", "appliances.kitchen", ""], FIELDS),
        pick(["apple", "samsung", ""], FIELDS),
        pick(PRICES[:9], PRICES[9:]),
        pick([str(rng.randint(1, 30))] * 5 + GOOD_IDS, ODD_IDS),
        "sess-1",
    ]
    line = ",".join(fields)
    odd = rng.random()
    if odd < 0.02:
        line = line + ",extra"
    elif odd < 0.04:
        line = ",".join(fields[:8])
    elif odd < 0.05:
        line = ""
    elif odd < 0.06:
        line = "   "
    elif odd < 0.07:
        line = line.replace(fields[5], f'"{fields[5]},x"') if fields[5] else '"' + line
    elif odd < 0.075:
        line = line + "\r"  # a CRLF line end
    elif odd < 0.077:
        line = line + "\r\r"
    elif odd < 0.08:
        line = line.replace("sess-1", "se\x00ss")
    elif odd < 0.082:
        line = line.replace("sess-1", "z" * 70_000)
    return line


def _taobao_line(rng: random.Random) -> str:
    def pick(good, odd, p_odd=0.1):
        return rng.choice(odd) if rng.random() < p_odd else rng.choice(good)

    ts = pick(
        [str(1511658000 + rng.randint(0, 7000)), "0", "4102444800"],
        ["1511658000.5", "-1", "4102444801", "99999999999", " 15", "abc", "", "1e9", "0015"],
    )
    line = ",".join(
        [
            pick([str(rng.randint(1, 50))], ODD_IDS),
            pick([str(rng.randint(1, 80))], ODD_IDS),
            pick([str(rng.randint(1, 9))], ODD_IDS),
            pick(["pv", "cart", "fav", "buy"], ["click", "PV", ""]),
            ts,
        ]
    )
    odd = rng.random()
    if odd < 0.03:
        line += ",x"
    elif odd < 0.05:
        line = ""
    return line


def _write(path, lines, raw_extra=()):
    with open(path, "wb") as fh:
        fh.write("\n".join(lines).encode("utf-8"))
        for chunk in raw_extra:
            fh.write(chunk)


def _compare(path, fmt, tmp_path, block_bytes):
    with RejectSink(path, tmp_path / "want.csv", log_first=0) as want_sink:
        want, want_side = read_event_rows(path, fmt, want_sink)
    want_rejects = (tmp_path / "want.csv").read_bytes() if (tmp_path / "want.csv").exists() else b""
    for threads in (1, 3):  # blocks converted one at a time, and three ahead of the in-order finish
        with RejectSink(path, tmp_path / "got.csv", log_first=0) as got_sink:
            got, got_side = read_event_columns(path, fmt, got_sink, block_bytes=block_bytes, threads=threads)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
        assert got_side == want_side
        assert (got_sink.count, got_sink.reasons) == (want_sink.count, want_sink.reasons)
        got_rejects = (tmp_path / "got.csv").read_bytes() if (tmp_path / "got.csv").exists() else b""
        assert got_rejects == want_rejects
    # block by block (the reader of files past the memory cap, its default two threads): the same events,
    # side info and rejects
    side: dict = {}
    with RejectSink(path, tmp_path / "streamed.csv", log_first=0) as streamed_sink:
        frames = list(iter_event_frames(path, fmt, streamed_sink, side, block_bytes=block_bytes, rows_per_frame=97))
    streamed = pd.concat(frames, ignore_index=True) if frames else want.iloc[:0]
    pd.testing.assert_frame_equal(streamed, want.reset_index(drop=True))
    assert side == want_side and (streamed_sink.count, streamed_sink.reasons) == (want_sink.count, want_sink.reasons)
    streamed_rejects = (tmp_path / "streamed.csv").read_bytes() if (tmp_path / "streamed.csv").exists() else b""
    assert streamed_rejects == want_rejects
    return got, got_sink


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("block_bytes", [97, 4096, 1 << 20])
def test_rees46_columns_equal_the_row_reader(tmp_path, seed, block_bytes):
    rng = random.Random(seed)
    lines = [REES46_HEADER] + [_rees46_line(rng) for _ in range(1500)]
    path = tmp_path / "log.csv"
    # a line that is not UTF-8, then a last line without a newline
    _write(
        path,
        lines,
        [
            b"\n2019-10-01 00:00:00 UTC,view,5,1,a.b,br\xff\xfe,1,2,s\n",
            b"2019-10-01 00:00:01 UTC,view,6,1,a.b,br,1,2,s",
        ],
    )
    got, sink = _compare(path, "rees46", tmp_path, block_bytes)
    assert len(got) > 500 and sink.count > 100  # the log is both: mostly good rows and plenty of bad ones
    assert got["ts"].min() < 0  # 1969 times too


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("block_bytes", [50, 1 << 20])
def test_taobao_columns_equal_the_row_reader(tmp_path, seed, block_bytes):
    rng = random.Random(seed)
    path = tmp_path / "log.csv"
    _write(path, [_taobao_line(rng) for _ in range(1500)])
    got, sink = _compare(path, "taobao", tmp_path, block_bytes)
    assert len(got) > 500 and sink.count > 50


def test_clean_files_take_the_fast_path_and_odd_headers_the_row_reader(tmp_path, monkeypatch):
    import graphrecall.ingest.columnar as columnar

    rng = random.Random(3)
    path = tmp_path / "clean.csv"
    rows = [
        f"2019-10-01 00:{m:02d}:00 UTC,view,{rng.randint(1, 50)},7,electronics.audio,sony,{rng.randint(1, 900)}.5,"
        f"{rng.randint(1, 20)},s"
        for m in range(60)
    ]
    _write(path, [REES46_HEADER] + rows)
    calls = []
    monkeypatch.setattr(columnar._Reader, "_one", lambda self, raw, line: calls.append(line))
    got, _ = read_event_columns(path, "rees46", RejectSink(path, None))
    assert len(got) == 60 and calls == []  # no row needed the row parser
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))  # CRLF, as the raw REES46 download
    again, _ = read_event_columns(path, "rees46", RejectSink(path, None))
    assert calls == []
    pd.testing.assert_frame_equal(again, got)
    monkeypatch.undo()
    _compare(path, "rees46", tmp_path, 1 << 20)
    _write(path, ["\ufeff" + REES46_HEADER.replace(",", " ,")] + rows)  # a header the row reader still takes
    _compare(path, "rees46", tmp_path, 1 << 20)
    with pytest.raises(ValueError, match="read_events"):
        read_event_columns(path, "movielens", RejectSink(path, None))
    empty = tmp_path / "empty.csv"
    empty.write_text(REES46_HEADER + "\n")
    got, side = read_event_columns(empty, "rees46", RejectSink(empty, None))
    assert len(got) == 0 and side == {} and list(got.columns) == ["user", "item", "type", "ts", "line"]
    assert got["ts"].dtype == np.int64
