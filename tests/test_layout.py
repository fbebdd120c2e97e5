"""The house's rules, checked on the code: no import cycle, no private name taken from another package,
every runtime dependency used by product code (or named by the open issue that gives it its job), and
everything product code imports declared. The layer contracts themselves are import-linter's
(``lint-imports``, run by ``make test``)."""

from __future__ import annotations

import ast
import functools
import re
import sys
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import grimp
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "graph_schema", "ingest", "walkers", "embed", "query", "app")
# declared runtime dependencies that product code does not import yet, each with the issue that gives it a job
AWAITING_A_JOB: dict[str, str] = {}


def product_files() -> list[Path]:
    return [p for d in PACKAGES for p in (ROOT / d).rglob("*.py")] + [ROOT / "__init__.py", ROOT / "__main__.py"]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("graphrecall", *parts)).removesuffix(".__init__")


def absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def test_no_import_cycles_anywhere_in_the_package():
    graph = grimp.build_graph("graphrecall", cache_dir=None)
    modules = sorted(graph.modules)
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def strongconnect(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for m in modules:
        if m not in index:
            strongconnect(m)
    assert len(modules) > 40
    assert cycles == []


def test_no_private_name_is_imported_from_another_package():
    found = []
    for path in product_files():
        module = module_name(path)
        package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                source = absolute(module, path.name == "__init__.py", node)
                source_package = source.rsplit(".", 1)[0] if source.count(".") > 1 else source
                for alias in node.names:
                    if (
                        alias.name.startswith("_")
                        and not alias.name.startswith("__")
                        and not source.startswith(package)
                        and source.startswith("graphrecall")
                    ):
                        found.append(f"{module} imports {source}.{alias.name} ({source_package})")
    assert found == []


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _declared() -> tuple[set[str], set[str]]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = lambda spec: _normal(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0])  # noqa: E731
    runtime = {name(d) for d in meta["dependencies"]}
    extras = {name(d) for group in meta["optional-dependencies"].values() for d in group}
    return runtime, extras


@functools.cache
def _imported_distributions() -> frozenset[str]:
    """The distributions whose top-level packages product code imports: a declared distribution that installs
    into another's package (neo4j-rust-ext's ``neo4j/_rust``, which the driver loads) counts with it."""
    imported = set()
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    imported -= set(sys.stdlib_module_names) | {"graphrecall"}
    provides = packages_distributions()
    out = set()
    for top in imported:
        assert top in provides, f"product code imports {top!r}, which no installed distribution provides"
        out |= {_normal(d) for d in provides[top]}
    runtime, _ = _declared()
    for name in runtime - out:  # a plugin installed inside an imported package
        tops = {f.parts[0] for f in distribution(name).files or () if f.parts}
        if tops & imported:
            out.add(name)
    return frozenset(out)


def test_every_runtime_dependency_is_imported_by_product_code_or_awaits_an_issue():
    runtime, _ = _declared()
    unused = runtime - _imported_distributions()
    assert {d: AWAITING_A_JOB.get(d, "no job: drop it or give it one") for d in sorted(unused)} == {
        d: AWAITING_A_JOB[d] for d in sorted(AWAITING_A_JOB) if d in unused
    }
    assert all(d in runtime for d in AWAITING_A_JOB)


def test_everything_product_code_imports_is_declared():
    runtime, extras = _declared()
    undeclared = _imported_distributions() - runtime - extras
    assert undeclared == set()


def test_the_channel_registry_keeps_the_served_order():
    """The registry's order is the channels' order everywhere (the API's enum, tune's table, the blend's tie
    order between equal contributions), so a sorted import must not reorder it."""
    from graphrecall.query.channels import REGISTRY
    from graphrecall.query.serve.retriever import CHANNELS

    assert tuple(REGISTRY) == ("swing", "cooc", "trans", "side", "eges", "rank", "seqrules", "gnn")
    assert CHANNELS == (*REGISTRY, "blend")
    assert all(REGISTRY[name].name == name for name in REGISTRY)
