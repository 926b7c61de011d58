-- The online RLHF loop (server/loops.c): rounds of sample → choose
-- comparisons → annotate → reward model → policy, each step an ordinary job
-- or annotation write. Every transition is one transaction that moves
-- (round, phase) forward only if the row is still where the tick read it,
-- so a kill -9 of rlhfd or a worker resumes the loop with no round run twice.
CREATE TABLE loops (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT,
    status               TEXT    NOT NULL CHECK (status IN ('running', 'succeeded', 'failed',
                                                            'cancelled')),
    phase                TEXT    NOT NULL CHECK (phase IN ('sampling', 'annotating', 'reward',
                                                           'policy', 'done')),
    round                INTEGER NOT NULL CHECK (round >= 1),
    config               TEXT    NOT NULL, -- the resolved configuration (JSON)
    project_id           INTEGER NOT NULL REFERENCES projects (id),
    prompts_dataset_id   INTEGER NOT NULL REFERENCES datasets (id),
    sft_checkpoint_id    INTEGER NOT NULL REFERENCES checkpoints (id),
    policy_checkpoint_id INTEGER NOT NULL REFERENCES checkpoints (id),
    reward_checkpoint_id INTEGER REFERENCES checkpoints (id),
    error                TEXT,
    created_by           INTEGER REFERENCES api_tokens (id),
    created_at           INTEGER NOT NULL,
    finished_at          INTEGER
);
CREATE INDEX loops_by_status ON loops (status, id);

-- One round of a loop, inserted when its comparisons are posted. The
-- round's comparisons are the project's ids first_comparison_id ..
-- last_comparison_id (inserted in one transaction, so consecutive).
CREATE TABLE loop_rounds (
    loop_id              INTEGER NOT NULL REFERENCES loops (id),
    round                INTEGER NOT NULL,
    selection            TEXT    NOT NULL, -- the rule used (random when no reward model yet)
    policy_checkpoint_id INTEGER NOT NULL REFERENCES checkpoints (id), -- sampled from
    samples              INTEGER NOT NULL,
    sample_gold          REAL,             -- mean gold score of the samples (demo task)
    comparisons          INTEGER NOT NULL,
    first_comparison_id  INTEGER,
    last_comparison_id   INTEGER,
    deadline_ms          INTEGER NOT NULL,
    rankings             INTEGER,          -- non-skipped rankings of its comparisons
    rm_accuracy          REAL,             -- the previous reward model on them, before training
    rm_pairs             INTEGER,
    agreement            REAL,             -- the project's Krippendorff alpha then
    reward_job_id        INTEGER REFERENCES jobs (id),
    reward_checkpoint_id INTEGER REFERENCES checkpoints (id),
    policy_job_id        INTEGER REFERENCES jobs (id),
    new_policy_checkpoint_id INTEGER REFERENCES checkpoints (id),
    proxy_score          REAL,
    kl                   REAL,
    gold_score           REAL,
    created_at           INTEGER NOT NULL,
    finished_at          INTEGER,
    PRIMARY KEY (loop_id, round)
) WITHOUT ROWID;

-- A ppo / grpo job's KL reference when it is not the policy it starts from:
-- a loop's policy job trains from the last policy, penalised towards the
-- loop's original SFT model. NULL: the reference is the starting policy.
ALTER TABLE jobs ADD COLUMN ref_checkpoint_id INTEGER REFERENCES checkpoints (id);
