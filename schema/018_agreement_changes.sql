-- 018_agreement_changes: what changes a project's agreement, and only that,
-- appends to ranking_changes (schema 016; server/agreement_cache.c keys on
-- its highest id).
--
-- The agreement leaves out the rankings of annotators excluded from the
-- project, as the exports do, so excluding or including one changes it.
-- And 016's update trigger fired on every UPDATE of a ranking, also the one
-- that writes a new ranking's shown order, labels and timing (which the
-- agreement never reads): two changes per ranking on the write path. Now
-- only a change of what the agreement reads counts (an edit rewrites
-- skipped, so it still counts).
DROP TRIGGER ranking_changes_update;

CREATE TRIGGER ranking_changes_update AFTER UPDATE OF comparison_id, token_id, skipped ON rankings
BEGIN
    INSERT INTO ranking_changes (project_id)
        SELECT project_id FROM comparisons WHERE id = NEW.comparison_id;
END;

CREATE TRIGGER ranking_changes_exclude AFTER INSERT ON project_excluded_annotators
BEGIN
    INSERT INTO ranking_changes (project_id) VALUES (NEW.project_id);
END;

CREATE TRIGGER ranking_changes_include AFTER DELETE ON project_excluded_annotators
BEGIN
    INSERT INTO ranking_changes (project_id) VALUES (OLD.project_id);
END;
