-- 016_annotation_quality: guidelines, label schemas, gold comparisons,
-- shuffled (blind) presentation, editable rankings, skip reasons and the
-- timing the quality report needs (issue 18; server/annotation_quality.c).

-- guidelines: Markdown shown to annotators (rendered without raw HTML).
-- label_schema: JSON {ratings: [{name, min, max}], flags: [name, ...]}
-- (server/label_schema.c). lease_seconds: how long `next` holds a
-- comparison for its annotator. gold_rate: the fraction of `next` answers
-- that are gold comparisons while any are left for the annotator.
ALTER TABLE projects ADD COLUMN guidelines TEXT NOT NULL DEFAULT '';
ALTER TABLE projects ADD COLUMN label_schema TEXT NOT NULL DEFAULT '{"ratings":[],"flags":[]}';
ALTER TABLE projects ADD COLUMN lease_seconds INTEGER NOT NULL DEFAULT 600
    CHECK (lease_seconds BETWEEN 30 AND 86400);
ALTER TABLE projects ADD COLUMN gold_rate REAL NOT NULL DEFAULT 0
    CHECK (gold_rate >= 0 AND gold_rate <= 1);

-- gold: the known answer of a gold comparison, a JSON array of groups of
-- candidate ids, best first (as a ranking's order); NULL for the others.
-- Gold comparisons are served outside the overlap (every annotator may get
-- each one) and are never handed out as ordinary work.
ALTER TABLE comparisons ADD COLUMN gold TEXT;

-- metadata: how a candidate was made (model, sampling), a JSON object;
-- admins see it, annotators do not.
ALTER TABLE candidates ADD COLUMN metadata TEXT;

-- served_ms: when `next` first handed this comparison to this annotator
-- (kept when the lease is renewed), so a ranking knows how long it took.
ALTER TABLE comparison_leases ADD COLUMN served_ms INTEGER;

-- shown_order: the candidate ids in the order the annotator saw them (JSON
-- array; the per-annotator shuffle of `next`). labels: the per-response
-- Likert ratings and flags, JSON [{candidate_id, ratings: {name: v},
-- flags: [name]}]. skip_reason: why a skip was a skip. time_ms: served ->
-- ranked. updated_at: the last edit (NULL: never edited).
ALTER TABLE rankings ADD COLUMN shown_order TEXT;
ALTER TABLE rankings ADD COLUMN labels TEXT;
ALTER TABLE rankings ADD COLUMN skip_reason TEXT
    CHECK (skip_reason IS NULL OR skip_reason IN ('unclear_prompt', 'cannot_judge', 'offensive', 'other'));
ALTER TABLE rankings ADD COLUMN time_ms INTEGER;
ALTER TABLE rankings ADD COLUMN updated_at INTEGER;

-- A ranking can now be edited and withdrawn, so "the highest ranking id"
-- no longer says whether a project's rankings changed. Every insert,
-- update and delete of a ranking appends a change here (AUTOINCREMENT: ids
-- never reused); the agreement cache keys on the highest change id.
CREATE TABLE ranking_changes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id INTEGER NOT NULL
);

CREATE TRIGGER ranking_changes_insert AFTER INSERT ON rankings
BEGIN
    INSERT INTO ranking_changes (project_id)
        SELECT project_id FROM comparisons WHERE id = NEW.comparison_id;
END;

CREATE TRIGGER ranking_changes_update AFTER UPDATE ON rankings
BEGIN
    INSERT INTO ranking_changes (project_id)
        SELECT project_id FROM comparisons WHERE id = NEW.comparison_id;
END;

CREATE TRIGGER ranking_changes_delete AFTER DELETE ON rankings
BEGIN
    INSERT INTO ranking_changes (project_id)
        SELECT project_id FROM comparisons WHERE id = OLD.comparison_id;
END;

-- The caller's own rankings, newest first (GET /v1/me/rankings).
CREATE INDEX rankings_by_token ON rankings (token_id, id);
