-- 009_dataset_rankings: preference datasets take every preference line
-- format the trainer reads (common/dataset_format.h), and the largest K is
-- one number everywhere (engine/ranking_limits.h: RANKING_MAX_K = 9).
--
-- A preference row is a pair (chosen, rejected: TRL and OpenAI rows, as
-- since 001) or a K-wise ranking: responses, a JSON array of 2..9 strings,
-- and ranks, a JSON array of as many integers (0 best; equal ranks tie).
-- margin is the row's optional margin (Llama 2), for either kind.
ALTER TABLE dataset_rows ADD COLUMN responses TEXT
    CHECK (responses IS NULL OR json_array_length(responses) BETWEEN 2 AND 9);
ALTER TABLE dataset_rows ADD COLUMN ranks TEXT
    CHECK (ranks IS NULL OR json_array_length(ranks) = json_array_length(responses));
ALTER TABLE dataset_rows ADD COLUMN margin REAL;

-- 001's CHECK on projects.k allows 16, but the API, the agreement and the
-- trainer stop at 9; a project above 9 could never be ranked or trained on.
-- Rebuilding projects (referenced by comparisons) to change the CHECK would
-- need the foreign keys off, so triggers hold the limit.
CREATE TRIGGER projects_k_insert BEFORE INSERT ON projects WHEN NEW.k > 9
BEGIN
    SELECT RAISE(ABORT, 'projects.k must be at most 9');
END;

CREATE TRIGGER projects_k_update BEFORE UPDATE OF k ON projects WHEN NEW.k > 9
BEGIN
    SELECT RAISE(ABORT, 'projects.k must be at most 9');
END;
