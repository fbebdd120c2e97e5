"""Why is B in A's list? The evidence behind one pair, as a networkx graph and as numbers.

* **swing**: the user pairs {u, v} whose basis holds both items, each adding
  ``w_u w_v / (alpha + |I_u ∩ I_v|)`` (``w = 1/sqrt(basis degree)``); their sum is the stored SWING score;
* **cooc**: the shared users, each adding ``1/log(1 + basis degree)`` (IUF; 1 without it), over
  ``sqrt(N_a N_b)``; their sum is the stored COOC score;
* **trans**: the ``TRANSITION`` counts both ways;
* **side**: the side fields the two items share;
* **eges** and **gnn**: the cosine of their stored EGES and LightGCN vectors;
* **blend**: B's rank, score and contribution in each channel as served, under the blend in use.

The graph (:func:`explain_pair`) has the two items, the shared users (with their weights), the Swing user
pairs, the shared side values, and the item-item evidence on the edge between A and B;
:func:`graphrecall.query.serve.explain.write_graph` writes it for Gephi or Cytoscape (GraphML, GEXF).
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path

import networkx as nx
import numpy as np

from ...graph_schema.schema import SIDE_INFO_FIELDS
from ...graph_schema.store import evidence
from ...graph_schema.store.meta import read_score_settings
from ..channels import BLEND_DEPTH
from .blend import channel_contributions
from .retriever import ItemRetriever, UnknownItem

logger = logging.getLogger(__name__)

PAIRS_SHOWN = 20  # Swing user pairs kept in the graph and the JSON, largest first (the sums use them all)


def _item(i: str) -> str:
    return f"item:{i}"


def _user(u: str) -> str:
    return f"user:{u}"


def explain_pair(driver, retriever: ItemRetriever, a: str, b: str, database: str = "neo4j") -> nx.Graph:
    """The evidence that ``b`` belongs in ``a``'s lists, read from the graph and from ``retriever`` (what the
    API serves). Raises :class:`~.retriever.UnknownItem` when either item is unknown. The graph's ``summary``
    attribute holds the numbers (:func:`summary`)."""
    a, b = str(a), str(b)
    view = retriever.view()
    for item in (a, b):
        if not view.has_item(item):
            raise UnknownItem(item)
    settings = read_score_settings(driver, database) or {}
    alpha, iuf = float(settings.get("alpha", 1.0)), bool(settings.get("iuf", True))
    user_weight = bool(settings.get("user_weight", True))
    props = evidence.item_properties(driver, [a, b], SIDE_INFO_FIELDS, database)
    users = [
        (str(u), int(deg or 0), set(items)) for u, deg, items in evidence.shared_basis_users(driver, a, b, database)
    ]

    g = nx.Graph(a=a, b=b)
    for item in (a, b):
        p = props.get(item, {})
        g.add_node(
            _item(item), kind="item", name=item, **{f: str(p[f]) for f in SIDE_INFO_FIELDS if p.get(f) is not None}
        )

    # cooc: each shared user's term over sqrt(N_a N_b)
    n_a, n_b = (int(props.get(x, {}).get("basis_deg") or 0) for x in (a, b))
    norm = math.sqrt(n_a * n_b) if n_a and n_b else 0.0
    cooc_terms = {}
    for u, deg, _ in users:
        w = (1.0 / math.log(1.0 + deg) if iuf else 1.0) if deg else 0.0
        cooc_terms[u] = w / norm if norm else 0.0
    # swing: every pair of shared users
    pairs = []
    for (u, du, iu), (v, dv, iv) in itertools.combinations(users, 2):
        common = len(iu & iv)
        wuv = 1.0 / math.sqrt(du * dv) if user_weight else 1.0
        pairs.append((u, v, common, wuv / (alpha + common)))
    swing_of_user = dict.fromkeys((u for u, _, _ in users), 0.0)
    for u, v, _, term in pairs:  # each user gets half of each pair it is in
        swing_of_user[u] += term / 2
        swing_of_user[v] += term / 2
    for u, deg, _ in users:
        g.add_node(
            _user(u),
            kind="user",
            name=u,
            basis_degree=deg,
            swing_weight=1.0 / math.sqrt(deg) if deg else 0.0,
            swing_share=swing_of_user[u],
            cooc_term=cooc_terms[u],
        )
        g.add_edge(_item(a), _user(u), kind="basis")
        g.add_edge(_user(u), _item(b), kind="basis")
    pairs.sort(key=lambda p: (-p[3], p[0], p[1]))
    for u, v, common, term in pairs[:PAIRS_SHOWN]:
        g.add_edge(_user(u), _user(v), kind="swing_pair", common_items=common, swing_term=term)

    # shared side values
    shared_side = {
        f: str(props[a][f])
        for f in SIDE_INFO_FIELDS
        if a in props and b in props and props[a].get(f) is not None and props[a].get(f) == props[b].get(f)
    }
    for f, value in shared_side.items():
        node = f"side:{f}={value}"
        g.add_node(node, kind="side", field=f, value=value)
        g.add_edge(_item(a), node, kind="side")
        g.add_edge(node, _item(b), kind="side")

    # item-item evidence
    stored = evidence.stored_pair(driver, a, b, database)
    t_ab, t_ba = evidence.transition_weights(driver, a, b, database)
    cosine, gnn_cosine = (_cosine(*(props.get(x, {}).get(p) for x in (a, b))) for p in ("embedding", "gnn_embedding"))
    per_channel = view.read_channels(a, BLEND_DEPTH)
    blend_terms, fused = channel_contributions(per_channel, retriever.blend_config, b, view.is_new)
    edge = {
        "kind": "pair",
        "transitions_a_to_b": t_ab,
        "transitions_b_to_a": t_ba,
        "swing_from_pairs": sum(p[3] for p in pairs),
        "cooc_from_users": sum(cooc_terms.values()),
        "blend": fused,
    }
    if cosine is not None:
        edge["eges_cosine"] = cosine
    if gnn_cosine is not None:
        edge["gnn_cosine"] = gnn_cosine
    for rel, (score, rank) in stored.items():
        edge[f"stored_{rel.lower()}_score"], edge[f"stored_{rel.lower()}_rank"] = float(score), int(rank)
    for ch, t in blend_terms.items():
        edge[f"{ch}_rank"], edge[f"{ch}_score"], edge[f"{ch}_contribution"] = t["rank"], t["score"], t["contribution"]
    g.add_edge(_item(a), _item(b), **edge)

    g.graph["summary"] = {
        "a": a,
        "b": b,
        "blend": str(retriever.blend_config),
        "blend_score": fused,
        "channels": blend_terms,
        "stored": {rel.lower(): {"score": float(s), "rank": int(r)} for rel, (s, r) in stored.items()},
        "swing": {
            "alpha": alpha,
            "user_weight": user_weight,
            "score": edge["swing_from_pairs"],
            "shared_users": len(users),
            "pairs": len(pairs),
            "top_pairs": [{"users": [u, v], "common_items": c, "term": t} for u, v, c, t in pairs[:PAIRS_SHOWN]],
        },
        "cooc": {
            "iuf": iuf,
            "score": edge["cooc_from_users"],
            "basis_degree_a": n_a,
            "basis_degree_b": n_b,
            "users": {u: cooc_terms[u] for u in sorted(cooc_terms, key=lambda x: -cooc_terms[x])[:PAIRS_SHOWN]},
        },
        "trans": {"a_to_b": t_ab, "b_to_a": t_ba},
        "side": shared_side,
        "eges_cosine": cosine,
        "gnn_cosine": gnn_cosine,
    }
    return g


def _cosine(x, y) -> float | None:
    if not x or not y:
        return None
    return float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))


def summary(g: nx.Graph) -> dict:
    """The numbers of :func:`explain_pair` (JSON-able): what ``GET /explain/{a}/{b}`` returns."""
    return g.graph["summary"]


def table(g: nx.Graph) -> str:
    """A readable account of the pair for a terminal."""
    s = summary(g)
    lines = [
        f"why {s['b']} is in {s['a']}'s lists (blend {s['blend']}: {s['blend_score']:.4f})",
        f"{'channel':8s}{'rank':>6s}{'score':>10s}{'adds':>10s}",
    ]
    for ch, t in s["channels"].items():
        lines.append(f"{ch:8s}{t['rank']:6d}{t['score']:10.4f}{t['contribution']:10.4f}")
    if not s["channels"]:
        lines.append(f"  (no channel lists {s['b']} in {s['a']}'s top {BLEND_DEPTH})")
    sw = s["swing"]
    lines.append(
        f"swing: {sw['shared_users']} shared users, {sw['pairs']} user pairs, sum {sw['score']:.6f}"
        + (
            f" (stored {s['stored']['swing']['score']:.6f}, rank {s['stored']['swing']['rank']})"
            if "swing" in s["stored"]
            else " (not in the stored top-K)"
        )
    )
    for p in sw["top_pairs"][:5]:
        lines.append(f"  {p['users'][0]} + {p['users'][1]}: {p['common_items']} common items, adds {p['term']:.6f}")
    co = s["cooc"]
    lines.append(
        f"cooc ({'IUF' if co['iuf'] else 'counts'}): sum {co['score']:.6f} over sqrt({co['basis_degree_a']} x "
        f"{co['basis_degree_b']})" + (f" (stored {s['stored']['cooc']['score']:.6f})" if "cooc" in s["stored"] else "")
    )
    lines.append(f"trans: {s['trans']['a_to_b']:g} times {s['a']} -> {s['b']}, {s['trans']['b_to_a']:g} back")
    lines.append("side: " + (", ".join(f"{f}={v}" for f, v in s["side"].items()) or "no shared field"))
    for name in ("eges", "gnn"):
        value = s.get(f"{name}_cosine")
        lines.append(f"{name} cosine: " + ("n/a" if value is None else f"{value:.4f}"))
    return "\n".join(lines)


def write_graph(g: nx.Graph, path: str | Path) -> Path:
    """The graph as GraphML (``.graphml``) or GEXF (``.gexf``), for Gephi, Cytoscape or networkx."""
    path = Path(path)
    plain = nx.Graph(**{k: v for k, v in g.graph.items() if k != "summary"})
    plain.add_nodes_from(g.nodes(data=True))
    plain.add_edges_from(g.edges(data=True))
    if path.suffix == ".graphml":
        nx.write_graphml(plain, path)
    elif path.suffix == ".gexf":
        nx.write_gexf(plain, path)
    else:
        raise ValueError(f"{path}: write .graphml or .gexf")
    return path


def draw_graph(g: nx.Graph, path: str | Path) -> Path:
    """A PNG of the graph, laid out by networkx (spring layout, seeded), drawn with matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError("--png needs matplotlib: pip install 'graphrecall[plot]'") from exc
    colours = {"item": "#d62728", "user": "#1f77b4", "side": "#2ca02c"}
    pos = nx.spring_layout(g, seed=0)
    fig, ax = plt.subplots(figsize=(9, 7))
    nx.draw_networkx(
        g,
        pos,
        ax=ax,
        node_color=[colours.get(d.get("kind"), "#999999") for _, d in g.nodes(data=True)],
        labels={n: n.split(":", 1)[1] for n in g.nodes},
        font_size=7,
        node_size=300,
        edge_color="#bbbbbb",
    )
    ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
