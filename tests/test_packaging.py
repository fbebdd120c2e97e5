"""The wheel as a user installs it: one top-level name, its data files, `graphrecall --help`, and `graphrecall
serve` answering from a saved snapshot while Neo4j is unreachable, all from a clean venv outside the repository."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from graphrecall.query.serve.snapshot import SnapshotRetriever

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    # built from a copy of the sources: setuptools leaves a build/ folder behind, whose stale files a later
    # build in the same tree would package
    src = tmp / "src"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__", "results", "data")
    shutil.copytree(ROOT, src, ignore=skip)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*pip_wheel, "-w", str(tmp / "dist"), str(src)], check=True, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("graphrecall-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    subprocess.run(
        [str(tmp / "venv" / "bin" / "pip"), "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, cwd=tmp
    )
    # the dependencies come from this environment's site-packages through PYTHONPATH, which (unlike a site
    # directory) runs no .pth file, so the editable install of the repository stays out of sight
    env = dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"])
    return tmp, wheel, env


def test_the_wheel_installs_one_top_level_name_with_its_data_files(wheel_venv):
    tmp, wheel, env = wheel_venv
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"graphrecall", wheel.name.split("-py3")[0] + ".dist-info"}
    for data in (
        "graphrecall/graph_schema/schema.cypher",
        "graphrecall/graph_schema/neo4j-server/pom.xml",
        "graphrecall/graph_schema/browser/guide.html",
        "graphrecall/query/scoring/java-procedures/src/main/java/io/graphrecall/Scores.java",
        "graphrecall/query/scoring/spark-connector/pom.xml",
    ):
        assert data in names
    assert not [n for n in names if n.startswith(("graphrecall/tests/", "graphrecall/bench/"))]
    top = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top).decode().split() == ["graphrecall"]
    where = subprocess.run(
        [str(tmp / "venv" / "bin" / "python"), "-c", "import graphrecall; print(graphrecall.__file__)"],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(tmp / "venv"))
    out = subprocess.run(
        [
            str(
                tmp / "venv" / "bin" / "graphrecall",
            ),
            "--help",
        ],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "ingest" in out and "serve" in out


@pytest.mark.slow
def test_serve_from_the_wheel_answers_from_a_saved_snapshot_while_neo4j_is_down(wheel_venv):
    tmp, _, env = wheel_venv
    lists = {"swing": {"a": (np.array(["b", "c"], dtype=object), np.array([2.0, 1.0], np.float32))}}
    SnapshotRetriever(items={"a", "b", "c"}, lists=lists).save(tmp / "snapshot", key="k1")
    port = _free_port()
    env = dict(
        env,
        GRAPHRECALL_NEO4J_URI=f"bolt://127.0.0.1:{_free_port()}",
        GRAPHRECALL_NEO4J_PASSWORD="unused",
        GRAPHRECALL_SNAPSHOT_DIR=str(tmp / "snapshot"),
        GRAPHRECALL_FAISS_DIR=str(tmp / "no-faiss"),
        GRAPHRECALL_PROBE_SECONDS="60",
    )
    proc = subprocess.Popen(
        [str(tmp / "venv" / "bin" / "graphrecall"), "serve", "--port", str(port), "--no-access-log"],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/health")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
                time.sleep(0.5)
        else:
            pytest.fail("graphrecall serve did not answer within 90 s")
        assert status == 200 and b'"degraded"' in body
        status, body = _get(f"http://127.0.0.1:{port}/i2i/a?k=2&channel=swing")
        assert status == 200 and b'"item_id":"b"' in body.replace(b" ", b"")
        assert _get(f"http://127.0.0.1:{port}/i2i/nope?k=2")[0] == 404
    finally:
        proc.terminate()
        proc.wait(timeout=30)
