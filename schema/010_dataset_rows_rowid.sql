-- 010_dataset_rows_rowid: dataset rows in a rowid table, so an uploaded row
-- takes about its own size on disk (issue 13: a 62 MB upload took 270 MB).
--
-- 001 made dataset_rows WITHOUT ROWID. A WITHOUT ROWID table is an index
-- b-tree: a row keeps at most ~1 KB in its page (on 4 KB pages) and spills
-- the rest into overflow pages of its own, so a 1.1 KB row used a 4 KB
-- overflow page for its last 600 bytes (3.1x the upload; 2x at 2 KB). A
-- rowid table keeps rows up to ~4 KB in the leaf pages, packed one after
-- another. The key (dataset_id, line) becomes a UNIQUE index beside it
-- (~15 bytes a row), which ON DELETE CASCADE and the readers' ORDER BY line
-- use. The columns and their CHECKs are 001's + 002's + 009's, unchanged.
CREATE TABLE dataset_rows_new (
    id              INTEGER PRIMARY KEY,
    dataset_id      INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    line            INTEGER NOT NULL,
    prompt          TEXT    NOT NULL,
    response        TEXT,
    chosen          TEXT,
    rejected        TEXT,
    prompt_messages TEXT,
    responses       TEXT CHECK (responses IS NULL OR json_array_length(responses) BETWEEN 2 AND 9),
    ranks           TEXT CHECK (ranks IS NULL OR json_array_length(ranks) = json_array_length(responses)),
    margin          REAL,
    UNIQUE (dataset_id, line)
);

INSERT INTO dataset_rows_new (dataset_id, line, prompt, response, chosen, rejected,
                              prompt_messages, responses, ranks, margin)
SELECT dataset_id, line, prompt, response, chosen, rejected, prompt_messages, responses, ranks,
       margin
FROM dataset_rows ORDER BY dataset_id, line;

DROP TABLE dataset_rows;
ALTER TABLE dataset_rows_new RENAME TO dataset_rows;
