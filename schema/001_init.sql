-- 001_init: the first schema of rlhfd.
--
-- Applied by db_migrate() inside one transaction; PRAGMA user_version records
-- the number of the last migration applied. Times are Unix seconds
-- (created_at, as the OpenAI API reports them) except leases, which are Unix
-- milliseconds because they are compared against a clock at sub-second scale.

-- API tokens. Only the SHA-256 of a token is stored (lowercase hex); the
-- token itself is shown once, when it is created.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    role         TEXT    NOT NULL CHECK (role IN ('admin', 'annotator', 'viewer')),
    token_sha256 TEXT    NOT NULL UNIQUE CHECK (length(token_sha256) = 64),
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);

-- Datasets: a named set of rows in one format, filled by one JSONL upload.
CREATE TABLE datasets (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    format     TEXT    NOT NULL CHECK (format IN ('sft', 'preference', 'prompts')),
    n_rows     INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    created_by INTEGER REFERENCES api_tokens (id)
);

-- One row of a dataset, by line number of the upload. Which columns are set
-- follows the dataset's format: prompts → prompt; sft → prompt, response;
-- preference → prompt, chosen, rejected.
CREATE TABLE dataset_rows (
    dataset_id INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    line       INTEGER NOT NULL,
    prompt     TEXT    NOT NULL,
    response   TEXT,
    chosen     TEXT,
    rejected   TEXT,
    PRIMARY KEY (dataset_id, line)
) WITHOUT ROWID;

-- Annotation projects: each comparison shows k candidates and must be ranked
-- by `overlap` different annotators.
CREATE TABLE projects (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    k          INTEGER NOT NULL CHECK (k BETWEEN 2 AND 16),
    overlap    INTEGER NOT NULL CHECK (overlap >= 1),
    created_at INTEGER NOT NULL
);

-- A prompt with 2..k candidate responses to rank.
CREATE TABLE comparisons (
    id         INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (id),
    prompt     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- Where each candidate came from: given by a person or import ('provided'),
-- or sampled from a checkpoint ('checkpoint', with its id).
CREATE TABLE candidates (
    id                   INTEGER PRIMARY KEY,
    comparison_id        INTEGER NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
    position             INTEGER NOT NULL,
    text                 TEXT    NOT NULL,
    source               TEXT    NOT NULL CHECK (source IN ('provided', 'checkpoint')),
    source_checkpoint_id INTEGER REFERENCES checkpoints (id),
    UNIQUE (comparison_id, position)
);

-- An item leased to an annotator by `next`, so two annotators are not handed
-- the same last free slot of a comparison.
CREATE TABLE comparison_leases (
    comparison_id    INTEGER NOT NULL REFERENCES comparisons (id) ON DELETE CASCADE,
    token_id         INTEGER NOT NULL REFERENCES api_tokens (id),
    lease_expires_ms INTEGER NOT NULL,
    PRIMARY KEY (comparison_id, token_id)
) WITHOUT ROWID;

-- One annotator's answer for one comparison: a full order with ties (rank
-- per candidate in ranking_entries), or a skip. At most one per annotator.
CREATE TABLE rankings (
    id            INTEGER PRIMARY KEY,
    comparison_id INTEGER NOT NULL REFERENCES comparisons (id),
    token_id      INTEGER NOT NULL REFERENCES api_tokens (id),
    skipped       INTEGER NOT NULL DEFAULT 0 CHECK (skipped IN (0, 1)),
    note          TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (comparison_id, token_id)
);

-- rank 0 is best; equal ranks are ties.
CREATE TABLE ranking_entries (
    ranking_id   INTEGER NOT NULL REFERENCES rankings (id) ON DELETE CASCADE,
    candidate_id INTEGER NOT NULL REFERENCES candidates (id),
    rank         INTEGER NOT NULL CHECK (rank >= 0),
    PRIMARY KEY (ranking_id, candidate_id)
) WITHOUT ROWID;

-- Training pairs derived from a ranking (K-wise → pairwise; ties give none).
CREATE TABLE preference_pairs (
    id                    INTEGER PRIMARY KEY,
    ranking_id            INTEGER NOT NULL REFERENCES rankings (id) ON DELETE CASCADE,
    chosen_candidate_id   INTEGER NOT NULL REFERENCES candidates (id),
    rejected_candidate_id INTEGER NOT NULL REFERENCES candidates (id)
);

-- Jobs are the queue. A worker (rlhf-train --db FILE --job ID) claims a
-- queued job by setting status 'running', attempts + 1, its lease_owner and
-- lease_expires_ms in one UPDATE ... WHERE status = 'queued'; it then
-- renews the lease in every write it makes, and every write checks it still
-- owns the lease (a fenced write), so a worker whose lease expired can no
-- longer change anything. config is the resolved hyperparameters (JSON).
CREATE TABLE jobs (
    id                   INTEGER PRIMARY KEY,
    type                 TEXT    NOT NULL,
    status               TEXT    NOT NULL CHECK (status IN ('validating_files', 'queued', 'running',
                                                            'succeeded', 'failed', 'cancelled')),
    config               TEXT    NOT NULL,
    parent_checkpoint_id INTEGER REFERENCES checkpoints (id),
    attempts             INTEGER NOT NULL DEFAULT 0,
    max_attempts         INTEGER NOT NULL CHECK (max_attempts >= 1),
    cancel_requested     INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    lease_owner          TEXT,
    lease_expires_ms     INTEGER,
    worker_pid           INTEGER,
    created_by           INTEGER REFERENCES api_tokens (id),
    created_at           INTEGER NOT NULL,
    started_at           INTEGER,
    finished_at          INTEGER,
    error                TEXT
);
CREATE INDEX jobs_by_status ON jobs (status, id);

CREATE TABLE job_events (
    id         INTEGER PRIMARY KEY,
    job_id     INTEGER NOT NULL REFERENCES jobs (id),
    created_at INTEGER NOT NULL,
    level      TEXT    NOT NULL CHECK (level IN ('info', 'warn', 'error')),
    type       TEXT    NOT NULL CHECK (type IN ('message', 'metrics')),
    code       TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    data       TEXT
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);

-- One value per (job, metric name, step). The primary key serves a range
-- read of one series; metrics_by_step serves "all metrics after step s".
CREATE TABLE metrics (
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    name   TEXT    NOT NULL,
    step   INTEGER NOT NULL,
    value  REAL,
    PRIMARY KEY (job_id, name, step)
) WITHOUT ROWID;
CREATE INDEX metrics_by_step ON metrics (job_id, step);

-- Checkpoints: safetensors bytes in the database (bytes) or a file next to it
-- (path), with their SHA-256 and size; metrics are the job's metrics at step.
CREATE TABLE checkpoints (
    id         INTEGER PRIMARY KEY,
    job_id     INTEGER NOT NULL REFERENCES jobs (id),
    step       INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('final', 'periodic')),
    bytes      BLOB,
    path       TEXT,
    sha256     TEXT    NOT NULL CHECK (length(sha256) = 64),
    size_bytes INTEGER NOT NULL,
    metrics    TEXT,
    created_at INTEGER NOT NULL,
    CHECK ((bytes IS NULL) <> (path IS NULL))
);
CREATE INDEX checkpoints_by_job ON checkpoints (job_id, id);
