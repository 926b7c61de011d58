-- 014: studies (server/routes_studies.c, server/studies_store.c): one base
-- job run over a grid or list of hyperparameter variations × seeds, as
-- ordinary jobs of the worker pool. The study row, its variations and every
-- child job are written in one transaction, so a crash leaves all of them or
-- none. A study's status is read from its jobs; nothing here changes after
-- the create.

-- spec: the request body as given (JSON text). metric and goal: the primary
-- metric of the summary table and whether its best value is the largest
-- ('max') or the smallest ('min').
CREATE TABLE studies (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    job_type   TEXT    NOT NULL,
    metric     TEXT    NOT NULL,
    goal       TEXT    NOT NULL CHECK (goal IN ('max', 'min')),
    spec       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by INTEGER REFERENCES api_tokens (id)
);

-- A variation: its position in the study, a label ("clip_coef=0.1") and the
-- hyperparameters it sets over the base job's (a JSON object).
CREATE TABLE study_variations (
    study_id        INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    variation       INTEGER NOT NULL,
    label           TEXT    NOT NULL,
    hyperparameters TEXT    NOT NULL,
    PRIMARY KEY (study_id, variation)
) WITHOUT ROWID;

-- Each child job: which variation and seed it runs.
CREATE TABLE study_jobs (
    study_id  INTEGER NOT NULL,
    variation INTEGER NOT NULL,
    seed      INTEGER NOT NULL,
    job_id    INTEGER NOT NULL UNIQUE REFERENCES jobs (id),
    PRIMARY KEY (study_id, variation, seed),
    FOREIGN KEY (study_id, variation) REFERENCES study_variations (study_id, variation)
) WITHOUT ROWID;
