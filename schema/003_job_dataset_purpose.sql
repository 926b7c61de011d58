-- 003_job_dataset_purpose: a job names its datasets by purpose.
--
-- POST /v1/jobs takes training_file and an optional validation_file (the
-- OpenAI fine-tuning API's names), so a job reads at most one dataset per
-- purpose, and may read the same dataset for both. 002's job_datasets keyed
-- (job_id, dataset_id) could hold neither fact; it is rebuilt keyed
-- (job_id, purpose). Rows from before (none are written by 002's code) are
-- kept as training data.
CREATE TABLE job_datasets_003 (
    job_id     INTEGER NOT NULL REFERENCES jobs (id),
    purpose    TEXT    NOT NULL CHECK (purpose IN ('training', 'validation')),
    dataset_id INTEGER NOT NULL REFERENCES datasets (id),
    PRIMARY KEY (job_id, purpose)
) WITHOUT ROWID;
INSERT INTO job_datasets_003 (job_id, purpose, dataset_id)
    SELECT job_id, 'training', min(dataset_id) FROM job_datasets GROUP BY job_id;
DROP TABLE job_datasets;
ALTER TABLE job_datasets_003 RENAME TO job_datasets;
-- A dataset some job uses cannot be deleted (DELETE /v1/datasets/{id}).
CREATE INDEX job_datasets_by_dataset ON job_datasets (dataset_id);
