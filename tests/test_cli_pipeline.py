import pytest

from graphrecall.cli import main
from graphrecall.pipeline import PipelineConfig, pick_sample_items, run_pipeline
from ingest.synthetic import generate_rees46
from query.retriever import SnapshotRetriever

COMMANDS = ["neo4j", "ingest", "scores", "embed", "tune", "demo", "serve", "generate"]


@pytest.mark.parametrize("cmd", [None, *COMMANDS])
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(([cmd] if cmd else []) + ["--help"])
    assert e.value.code == 0
    assert "usage: graphrecall" in capsys.readouterr().out


def test_cli_errors_say_how_to_fix(neo4j_server, tmp_path, capsys, monkeypatch):
    _, settings = neo4j_server
    monkeypatch.setenv("GRAPHRECALL_NEO4J_URI", settings.uri)
    monkeypatch.setenv("GRAPHRECALL_NEO4J_PASSWORD", settings.password)
    assert main(["-q", "ingest", "events", str(tmp_path / "missing.csv"), "--format", "taobao"]) == 2
    assert "no such file" in capsys.readouterr().err
    f = tmp_path / "x.csv"
    f.write_text("a,b\n1,2\n")
    assert main(["-q", "ingest", "events", str(f), "--format", "generic"]) == 2
    assert "--map" in capsys.readouterr().err
    assert main(["-q", "ingest", "events", str(f), "--format", "nope"]) == 2
    assert "choose one of" in capsys.readouterr().err
    assert main(["-q", "serve", "--blend", "score:swing"]) == 2  # checked before anything starts
    assert "--blend: bad blend weight 'swing'" in capsys.readouterr().err


def test_wrong_password_error_names_the_fix(neo4j_server, capsys, monkeypatch):
    _, settings = neo4j_server
    monkeypatch.setenv("GRAPHRECALL_NEO4J_URI", settings.uri)
    monkeypatch.setenv("GRAPHRECALL_NEO4J_PASSWORD", "wrong-password")
    assert main(["-q", "scores"]) == 2
    assert "GRAPHRECALL_NEO4J_PASSWORD" in capsys.readouterr().err


@pytest.mark.slow
def test_pipeline_end_to_end_on_generated_data(driver, tmp_path):
    data = generate_rees46(tmp_path / "gen.csv", n_users=120, random_seed=1)
    cfg = PipelineConfig(epochs=2, walks_per_node=5, dim=16)
    res = run_pipeline(driver, [(data, "rees46")], tmp_path / "artifacts", cfg, progress=False)
    assert res.ingest[0].rejected == 0 and res.swing.written > 0 and res.cooc.written > 0
    assert res.n_items > 0 and (res.faiss_dir / "items.faiss").exists()
    with driver.session() as s:
        n_vec = s.run("MATCH (i:Item) WHERE i.embedding IS NOT NULL RETURN count(i)").single()[0]
        n_items = s.run("MATCH (i:Item) RETURN count(i)").single()[0]
    assert n_vec == n_items
    snap = SnapshotRetriever.from_neo4j(driver, res.faiss_dir)
    item = pick_sample_items(driver, 1)[0]
    for ch in ("swing", "cooc", "eges", "blend"):
        assert len(snap.similar_items(item, k=5, channel=ch)) > 0
    # the generated data browses inside a category: swing neighbours share it
    with driver.session() as s:
        same = s.run("MATCH (i:Item)-[r:SWING]->(j:Item) WHERE r.rank = 1 "
                     "RETURN avg(CASE WHEN i.category = j.category THEN 1.0 ELSE 0.0 END)").single()[0]
    assert same > 0.8
