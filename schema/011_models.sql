-- 011_models: base models as a resource, and large artifacts as files.
--
-- A model is registered from a directory under one of rlhfd's --model-root
-- directories (source 'directory', path its resolved absolute path), or
-- uploaded file by file (source 'upload'): each file goes into the artifact
-- store (common/artifact_store.h) and a model_files row names it by
-- sha256. An upload is 'uploading' until it is completed, then 'ready' or
-- 'failed' (error: a JSON object of file name -> why). name is the id the
-- API shows (OpenAI's model id).
CREATE TABLE models (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    source      TEXT    NOT NULL CHECK (source IN ('directory', 'upload')),
    path        TEXT,
    status      TEXT    NOT NULL CHECK (status IN ('uploading', 'ready', 'failed')),
    family      TEXT,
    chat_format TEXT,
    error       TEXT,
    created_at  INTEGER NOT NULL,
    created_by  INTEGER REFERENCES api_tokens (id),
    CHECK ((source = 'directory') = (path IS NOT NULL))
);

-- The files of an uploaded model, each an object of the artifact store.
CREATE TABLE model_files (
    model_id   INTEGER NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    sha256     TEXT    NOT NULL CHECK (length(sha256) = 64),
    size_bytes INTEGER NOT NULL,
    PRIMARY KEY (model_id, name)
) WITHOUT ROWID;
CREATE INDEX model_files_by_sha256 ON model_files (sha256);

-- Checkpoints in the artifact store have path = 'objects/<sha256>' (001's
-- path column); collection looks them up by digest.
CREATE INDEX checkpoints_by_sha256 ON checkpoints (sha256) WHERE path IS NOT NULL;

-- The base model a job's lineage starts from: set on a job given a
-- registered model, copied from the parent checkpoint's job otherwise. Its
-- tokenizer and chat format are the job's.
ALTER TABLE jobs ADD COLUMN base_model_id INTEGER REFERENCES models (id);
CREATE INDEX jobs_by_base_model ON jobs (base_model_id) WHERE base_model_id IS NOT NULL;
