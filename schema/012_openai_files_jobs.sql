-- 012: the OpenAI-compatible surface (server/routes_files.c,
-- server/routes_fine_tuning.c) over the native tables.
--
-- A file (/v1/files, id file-N) is dataset N (its name the filename it was
-- uploaded under), with its purpose ('fine-tune') and its size in bytes. Native
-- uploads (POST /v1/datasets/{id}/upload) record their size too; datasets of
-- earlier versions keep NULL.
ALTER TABLE datasets ADD COLUMN purpose TEXT;
ALTER TABLE datasets ADD COLUMN bytes INTEGER;

-- The bytes of an upload as they came, in pieces of at most 1 MiB (the rows
-- are parsed into dataset_rows; GET /v1/files/{id}/content gives these back).
CREATE TABLE dataset_content (
    dataset_id INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    bytes      BLOB    NOT NULL,
    PRIMARY KEY (dataset_id, seq)
) WITHOUT ROWID;

-- What a job created through POST /v1/fine_tuning/jobs (ftjob-N = job N)
-- was asked for beyond the native job: the model string as given, the
-- suffix of its fine_tuned_model and its metadata (a JSON object); the
-- method follows from the job's type. Written with the job, in its
-- transaction.
CREATE TABLE fine_tuning_jobs (
    job_id   INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    model    TEXT NOT NULL,
    suffix   TEXT,
    metadata TEXT
);
