// graphrecall: saved queries for Neo4j Browser (http://127.0.0.1:7474/browser/).
// Paste one at a time, or star them into Browser favorites. Set the item once with
//   :param item => '1005115'
// (any Item.id; the demo prints a few).

// 1. What the graph holds
CALL db.labels() YIELD label
CALL (label) { MATCH (n) WHERE label IN labels(n) RETURN count(n) AS nodes }
RETURN label, nodes ORDER BY label;

// 2. An item, its side info and its top Swing neighbours (with the graph view)
MATCH (i:Item {id: $item})-[r:SWING]->(j:Item)
RETURN i, r, j ORDER BY r.rank LIMIT 10;

// 3. Swing vs co-occurrence vs next items (trans) vs EGES for one item, side by side
MATCH (i:Item {id: $item})
CALL (i) { MATCH (i)-[r:SWING]->(j) WITH j ORDER BY r.rank RETURN collect(j.id)[..10] AS swing }
CALL (i) { MATCH (i)-[r:COOC]->(j) WITH j ORDER BY r.rank RETURN collect(j.id)[..10] AS cooc }
CALL (i) { MATCH (i)-[t:TRANSITION]->(j) WHERE j <> i WITH j ORDER BY t.weight DESC, j.id
           RETURN collect(j.id)[..10] AS trans }
CALL (i) {
  CALL db.index.vector.queryNodes('item_embedding', 11, i.embedding) YIELD node, score
  WITH node, score WHERE node <> i RETURN collect(node.id)[..10] AS eges
}
RETURN i.id, i.category, i.brand, i.market, swing, cooc, trans, eges;

// 4. Why Swing likes a pair: users who engaged with both, and their overlap
MATCH (i:Item {id: $item})-[:SWING]->(j:Item)
WITH i, j LIMIT 1
MATCH (i)<-[:BASIS]-(u:User)-[:BASIS]->(j)
RETURN i.id, j.id, u.id, u.basis_deg AS items_of_user LIMIT 25;

// 5. Session paths through an item (TRANSITION edges by weight)
MATCH (a:Item {id: $item})-[t:TRANSITION]->(b:Item)
RETURN a, t, b ORDER BY t.weight DESC LIMIT 25;

// 6. Sessions that booked/purchased the item, with their ordered items
MATCH (s:Session)-[:BOOKED]->(:Item {id: $item})
RETURN s.user, s.items, s.start_ts ORDER BY s.start_ts LIMIT 20;

// 7. Attention check: which side fields EGES relied on (cold items have no ID signal)
MATCH (i:Item) RETURN i.embedding_cold AS cold, count(*) AS items;

// 8. Ingest audit: batches per file
MATCH (b:IngestBatch) RETURN b.source, b.kind, count(*) AS batches, sum(b.rows) AS rows ORDER BY b.source, b.kind;

// 9. The blend `graphrecall tune` chose for this graph (what `graphrecall serve` uses), with its validation table
MATCH (b:BlendChoice {name: 'default'})
RETURN b.spec, b.at, b.details;
