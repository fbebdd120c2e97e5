"""The graph store: the Cypher that reads and writes the graph's served data, one module per concern.

* :mod:`.meta`: the data version, the blend ``graphrecall tune`` chose, the score settings;
* :mod:`.lists`: the stored top-K lists (SWING, COOC, RANKED) and TRANSITION lists;
* :mod:`.items`: item ids, side info and popularity;
* :mod:`.sessions`: the sessions and a user's recent items.

Every value reaches Cypher as a ``$parameter``; relationship types are checked against fixed sets.
"""


def read_rows(driver, database: str, query: str, **params) -> list:
    """The rows of one read-only query (``values()``)."""
    with driver.session(database=database, default_access_mode="READ") as s:
        return s.run(query, **params).values()
