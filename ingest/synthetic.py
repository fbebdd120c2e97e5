"""A generated REES46-format event log with known structure, for runs without real data.

Markets contain categories, categories contain brands and items. Each user has a
favourite category; sessions browse mostly inside it (so Swing, co-occurrence and
EGES have a signal to find) and some end in a purchase.
"""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .formats import REES46_HEADER


def generate_rees46(
    path: str | Path,
    *,
    n_users: int = 400,
    n_markets: int = 4,
    categories_per_market: int = 5,
    items_per_category: int = 20,
    sessions_per_user: float = 4.0,
    purchase_rate: float = 0.3,
    random_seed: int = 0,
) -> Path:
    rng = np.random.default_rng(random_seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    markets = ["electronics", "appliances", "apparel", "furniture", "sport", "kids", "auto", "books"][:n_markets]
    n_cat = n_markets * categories_per_market
    n_items = n_cat * items_per_category
    item_cat = np.repeat(np.arange(n_cat), items_per_category)
    item_brand = item_cat * 3 + rng.integers(0, 3, n_items)
    item_price = np.round(rng.lognormal(4.5, 1.0, n_items), 2)
    popularity = rng.zipf(1.6, n_items).astype(float)
    t = int(datetime(2019, 10, 1, tzinfo=timezone.utc).timestamp())
    rows = []
    for u in range(n_users):
        fav = rng.integers(0, n_cat)
        ts = t + int(rng.integers(0, 3600 * 24))
        for _ in range(max(1, rng.poisson(sessions_per_user))):
            cat = fav if rng.random() < 0.8 else rng.integers(0, n_cat)
            pool = np.flatnonzero(item_cat == cat)
            p = popularity[pool] / popularity[pool].sum()
            length = 2 + rng.poisson(3)
            seq = rng.choice(pool, size=length, p=p)
            session = f"s-{u}-{ts}"
            for it in seq:
                rows.append((ts, "view", it, u, session))
                ts += int(rng.integers(10, 300))
            if rng.random() < purchase_rate:
                rows.append((ts, "cart", seq[-1], u, session))
                ts += 30
                rows.append((ts, "purchase", seq[-1], u, session))
            ts += int(rng.integers(3600, 3600 * 48))  # a gap > 30 min ends the session
    rows.sort(key=lambda r: r[0])
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(REES46_HEADER)
        for ts, ev, it, u, session in rows:
            cat = int(item_cat[it])
            market = markets[cat // categories_per_market]
            w.writerow(
                [
                    datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                    ev,
                    1_000_000 + int(it),
                    2_000 + cat,
                    f"{market}.cat{cat}",
                    f"brand{int(item_brand[it])}",
                    f"{item_price[it]:.2f}",
                    500_000 + u,
                    session,
                ]
            )
    return path


def generate_rees46_sized(path: str | Path, n_events: int, *, random_seed: int = 0) -> Path:
    """A log of about ``n_events`` events in the shape the scale bench uses: about 22 events per user,
    one item per 20 events, 8 markets of 25 categories."""
    return generate_rees46(
        path,
        n_users=max(50, round(n_events / 22.5)),
        n_markets=8,
        categories_per_market=25,
        items_per_category=max(20, round(n_events / 20 / 200)),
        random_seed=random_seed,
    )
