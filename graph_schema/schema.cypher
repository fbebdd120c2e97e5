// graphrecall graph schema, version 4.
// v4: (:DataVersion {name, version, what, at}), bumped by every stage that changes what the API serves.
// v3: (:BlendChoice {name, spec, details, at}), the blend `graphrecall tune` chose.
// v2: dropped the ENGAGED(type) index; MERGE on ENGAGED planned seeks on it (one type = most rows) and
//     ingest slowed down quadratically.
// Applied by graph_schema.schema.apply_schema(); every statement is idempotent.
// Statements are separated by ';' at the end of a line.
//
// (:User {id})-[:ENGAGED {type, count, first_ts, last_ts}]->(:Item {id, category, brand, shop, price, price_bucket, market})
// (:User)-[:HAS_SESSION]->(:Session {id, user, start_ts, end_ts, items, booked})-[:BOOKED]->(:Item)
// (:Item)-[:TRANSITION {weight}]->(:Item)          session item -> next item, summed over sessions
// (:Item)-[:SWING {score, norm, rank}]->(:Item)    written by graphrecall.query.scoring (graphrecall scores) (norm = score / best of i)
// (:Item)-[:COOC {score, norm, rank}]->(:Item)     written by graphrecall.query.scoring (graphrecall scores)
// (:BlendChoice {name, spec, details, at})          the blend chosen by `graphrecall tune` (graphrecall.query.evaluate.tune)
// (:DataVersion {name, version, what, at})         the served data's version (graphrecall.graph_schema.store.meta)
// (:IngestBatch {key, rows, at})                   one per committed ingest batch (idempotency, resume)
// (:SchemaVersion {name: 'graphrecall', version})

CREATE CONSTRAINT user_id IF NOT EXISTS FOR (u:User) REQUIRE u.id IS UNIQUE;
CREATE CONSTRAINT item_id IF NOT EXISTS FOR (i:Item) REQUIRE i.id IS UNIQUE;
CREATE CONSTRAINT session_id IF NOT EXISTS FOR (s:Session) REQUIRE s.id IS UNIQUE;
CREATE CONSTRAINT ingest_batch_key IF NOT EXISTS FOR (b:IngestBatch) REQUIRE b.key IS UNIQUE;
CREATE CONSTRAINT blend_choice_name IF NOT EXISTS FOR (b:BlendChoice) REQUIRE b.name IS UNIQUE;
CREATE CONSTRAINT data_version_name IF NOT EXISTS FOR (v:DataVersion) REQUIRE v.name IS UNIQUE;
CREATE CONSTRAINT schema_version_name IF NOT EXISTS FOR (v:SchemaVersion) REQUIRE v.name IS UNIQUE;
CREATE INDEX item_category IF NOT EXISTS FOR (i:Item) ON (i.category);
CREATE INDEX item_brand IF NOT EXISTS FOR (i:Item) ON (i.brand);
CREATE INDEX item_market IF NOT EXISTS FOR (i:Item) ON (i.market);
DROP INDEX engaged_type IF EXISTS;
CREATE INDEX swing_rank IF NOT EXISTS FOR ()-[r:SWING]-() ON (r.rank);
CREATE INDEX cooc_rank IF NOT EXISTS FOR ()-[r:COOC]-() ON (r.rank);
MERGE (v:SchemaVersion {name: 'graphrecall'}) SET v.version = 4;
