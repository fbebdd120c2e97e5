import pytest

from graphrecall.app.cli import main
from graphrecall.app.pipeline import PipelineConfig, pick_sample_items, run_pipeline
from graphrecall.embed.index import ItemVectorIndex
from graphrecall.embed.settings import EgesSettings
from graphrecall.ingest.synthetic import generate_rees46
from graphrecall.query.serve.snapshot import SnapshotRetriever

COMMANDS = ["neo4j", "ingest", "scores", "embed", "refresh", "tune", "demo", "serve", "generate"]


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
    cfg = PipelineConfig(eges=EgesSettings(epochs=2, walks_per_node=5, dim=16))
    res = run_pipeline(driver, [(data, "rees46")], tmp_path / "artifacts", cfg, progress=False)
    assert res.ingest[0].rejected == 0 and res.swing.written > 0 and res.cooc.written > 0
    assert res.n_items > 0 and len(ItemVectorIndex.load(res.faiss_dir).item_ids) == res.n_items
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
        same = s.run(
            "MATCH (i:Item)-[r:SWING]->(j:Item) WHERE r.rank = 1 "
            "RETURN avg(CASE WHEN i.category = j.category THEN 1.0 ELSE 0.0 END)"
        ).single()[0]
    assert same > 0.8


@pytest.mark.slow
def test_refresh_updates_lists_like_a_full_rebuild(driver, tmp_path, monkeypatch, neo4j_server):
    from graphrecall.app.pipeline import compute_scores
    from graphrecall.embed.index import ItemVectorIndex
    from graphrecall.graph_schema.store.lists import read_scores
    from graphrecall.graph_schema.store.meta import read_data_version

    lines = generate_rees46(tmp_path / "gen.csv", n_users=120, random_seed=2).read_text().splitlines()
    cut = 1 + int(0.8 * (len(lines) - 1))  # the generator writes rows in time order
    day1, day2 = tmp_path / "day1.csv", tmp_path / "day2.csv"
    day1.write_text("\n".join(lines[:cut]) + "\n")
    day2.write_text("\n".join([lines[0], *lines[cut:]]) + "\n")
    cfg = PipelineConfig(eges=EgesSettings(epochs=2, walks_per_node=5, dim=16))
    art = tmp_path / "artifacts"
    run_pipeline(driver, [(day1, "rees46")], art, cfg, progress=False)
    _, settings = neo4j_server
    monkeypatch.setenv("GRAPHRECALL_NEO4J_URI", settings.uri)
    monkeypatch.setenv("GRAPHRECALL_NEO4J_PASSWORD", settings.password)
    monkeypatch.setenv("GRAPHRECALL_ARTIFACTS", str(art))
    version = read_data_version(driver)
    assert (
        main(
            [
                "-q",
                "refresh",
                str(day2),
                "--format",
                "rees46",
                "--walks-per-node",
                "5",
                "--reject-dir",
                str(tmp_path / "rej"),
            ]
        )
        == 0
    )
    assert read_data_version(driver) == version + 1  # one reload for the whole refresh
    refreshed = {rel: read_scores(driver, rel) for rel in ("SWING", "COOC")}
    compute_scores(driver, cfg, progress=False)
    for rel, got in refreshed.items():
        want = read_scores(driver, rel)
        assert set(got) == set(want) and all(got[k] == pytest.approx(want[k], abs=1e-9) for k in want)
    new_items = {line.split(",")[2] for line in lines[cut:]} - {line.split(",")[2] for line in lines[1:cut]}
    assert new_items  # day 2 brings items day 1 did not have: they get vectors in Neo4j and in Faiss
    index = ItemVectorIndex.load(art / "faiss")
    with driver.session() as s:
        n_missing = s.run("MATCH (i:Item) WHERE i.embedding IS NULL RETURN count(i)").single()[0]
    assert n_missing == 0 and all(i in index for i in new_items)


def test_torch_threads_are_set_for_eges_and_restored(monkeypatch):
    import torch

    from graphrecall.common.threads import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="--torch-threads"):
        with torch_threads(0):
            pass
    monkeypatch.setenv("GRAPHRECALL_TORCH_THREADS", "2")
    assert PipelineConfig().torch_threads == 2
    monkeypatch.delenv("GRAPHRECALL_TORCH_THREADS")
    assert PipelineConfig().torch_threads == 1


def test_neo4j_plugin_puts_the_current_build_in_dest_and_says_how_to_fix_a_missing_maven(tmp_path, monkeypatch, capsys):
    from graphrecall.query.scoring.procedure import build_id

    (tmp_path / "graphrecall-procedures-oldbuild.jar").write_text("old")
    assert main(["-q", "neo4j", "plugin", "--dest", str(tmp_path)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == [f"graphrecall-procedures-{build_id()}.jar"]
    monkeypatch.setenv("GRAPHRECALL_HOME", str(tmp_path / "empty-cache"))  # nothing built there
    monkeypatch.setattr("graphrecall.query.scoring.procedure.shutil.which", lambda name: None)
    assert main(["-q", "neo4j", "plugin", "--dest", str(tmp_path / "x")]) == 2
    assert "Maven (mvn) is not on PATH; install it" in capsys.readouterr().err
