-- 006_preference_pairs_index: preference_pairs by ranking.
--
-- Every ranking reply counts its pairs (SELECT count(*) ... WHERE
-- ranking_id = ?) and deleting a ranking cascades to its pairs; without an
-- index both scanned the whole table, so a ranking write cost O(all pairs)
-- and the write rate fell as pairs accumulated (bench/bench_server.py).
CREATE INDEX preference_pairs_by_ranking ON preference_pairs (ranking_id);
