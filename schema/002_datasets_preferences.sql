-- 002_datasets_preferences: what the dataset, preference and idempotency
-- routes need beyond 001.

-- A row uploaded in the OpenAI chat preference format keeps its conversation:
-- the input messages as a JSON array of {role, content}. prompt then holds
-- the content of the last user message, so every row has a plain prompt.
ALTER TABLE dataset_rows ADD COLUMN prompt_messages TEXT;

-- The datasets a job reads. A dataset some job uses cannot be deleted.
CREATE TABLE job_datasets (
    job_id     INTEGER NOT NULL REFERENCES jobs (id),
    dataset_id INTEGER NOT NULL REFERENCES datasets (id),
    PRIMARY KEY (job_id, dataset_id)
) WITHOUT ROWID;
CREATE INDEX job_datasets_by_dataset ON job_datasets (dataset_id);

-- `next` looks for the comparisons of a project an annotator has not
-- answered, least-ranked first.
CREATE INDEX comparisons_by_project ON comparisons (project_id, id);

-- Idempotency-Key: the first successful answer to a creating request, per
-- token and key. request_sha256 covers method, path and body, so the same
-- key with a different request is recognised and refused. Written in the
-- same transaction as the thing it created; kept for 24 hours.
CREATE TABLE idempotency_keys (
    token_id       INTEGER NOT NULL REFERENCES api_tokens (id),
    key            TEXT    NOT NULL,
    request_sha256 TEXT    NOT NULL CHECK (length(request_sha256) = 64),
    status         INTEGER NOT NULL,
    response       TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (token_id, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
