-- 017_project_comparison_counts: how many comparisons each project has,
-- kept by triggers.
--
-- Every project in `GET /v1/projects` (and every GET of one) carries
-- n_comparisons. Counting them per row walked the project's part of
-- comparisons_by_project on every call: at 120,000 comparisons that list's
-- p99 was 2.3 s beside 100 annotators (bench/bench_annotators.py). As in
-- 007, triggers keep the count, so every writer keeps it right.
ALTER TABLE projects ADD COLUMN n_comparisons INTEGER NOT NULL DEFAULT 0;

UPDATE projects SET n_comparisons =
    (SELECT count(*) FROM comparisons c WHERE c.project_id = projects.id);

CREATE TRIGGER comparisons_count_insert AFTER INSERT ON comparisons
BEGIN
    UPDATE projects SET n_comparisons = n_comparisons + 1 WHERE id = NEW.project_id;
END;

CREATE TRIGGER comparisons_count_delete AFTER DELETE ON comparisons
BEGIN
    UPDATE projects SET n_comparisons = n_comparisons - 1 WHERE id = OLD.project_id;
END;

CREATE TRIGGER comparisons_count_update AFTER UPDATE OF project_id ON comparisons
BEGIN
    UPDATE projects SET n_comparisons = n_comparisons - 1 WHERE id = OLD.project_id;
    UPDATE projects SET n_comparisons = n_comparisons + 1 WHERE id = NEW.project_id;
END;
