"""Property test: random garbage lines mixed into a valid log never change what valid rows produce."""

from conftest import graph_counts, wipe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphrecall.ingest.writer import ingest_events

valid_row = st.builds(
    lambda u, i, c, b, t: f"{u},{i},{c},{b},{t}",
    st.integers(1, 30),
    st.integers(1, 40),
    st.integers(1, 5),
    st.sampled_from(["pv", "cart", "fav", "buy"]),
    st.integers(1_500_000_000, 1_500_100_000),
)

no_newline = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
    max_size=60,
)


def corrupt(row: str, how: int, junk: str) -> str:
    f = row.split(",")
    if how == 0:
        return ",".join(f[:-1])  # missing column
    if how == 1:
        return row + ",extra"  # extra column
    if how == 2:
        f[0] = "u" + junk.replace(",", "")  # unparsable user id
    elif how == 3:
        f[3] = "teleport"  # unknown behavior
    elif how == 4:
        f[4] = "t" + junk.replace(",", "")  # unparsable time
    elif how == 5:
        f[1] = f[1] + "\x00"  # NUL byte
    else:
        return "x" * 70_000  # huge line
    return ",".join(f)


lines = st.lists(
    st.one_of(
        valid_row.map(lambda r: (r, True)),
        st.builds(lambda r, h, j: (corrupt(r, h, j), False), valid_row, st.integers(0, 6), no_newline),
        no_newline.filter(lambda s: s.count(",") != 4).map(lambda s: ("," * 5 + s if s.strip() else "garbage", False)),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=lines)
def test_garbage_never_changes_valid_counts(session_driver, tmp_path_factory, rows):
    wipe(session_driver)
    d = tmp_path_factory.mktemp("fuzz")
    path = d / "log.csv"
    path.write_bytes(("\n".join(r for r, _ in rows) + "\n").encode("utf-8"))
    n_valid = sum(ok for _, ok in rows)
    rep = ingest_events(session_driver, path, "taobao", reject_dir=d, progress=False)
    assert rep.lines_ok == n_valid
    assert rep.rejected == len(rows) - n_valid
    counts = graph_counts(session_driver)
    assert counts["engaged_sum"] == n_valid
    again = ingest_events(session_driver, path, "taobao", reject_dir=d, progress=False)
    assert again.batches_written == 0 and graph_counts(session_driver) == counts
