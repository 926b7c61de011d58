-- An online loop's sampling as an ordinary job (engine/loop_sample.h): a
-- `loop-sample` job samples K responses per prompt from the policy in the
-- worker pool, scores them with the loop's reward models and stores them
-- here; the daemon (server/loops.c) chooses and posts the comparisons.

-- The reward models a job scores with after its reward_checkpoint_id (a
-- loop's ensemble for `disagreement`), in order.
CREATE TABLE job_reward_models (
    job_id        INTEGER NOT NULL REFERENCES jobs (id),
    position      INTEGER NOT NULL CHECK (position >= 1),
    checkpoint_id INTEGER NOT NULL REFERENCES checkpoints (id),
    PRIMARY KEY (job_id, position)
) WITHOUT ROWID;

-- What a loop-sample job drew: written in ONE transaction fenced on the
-- job's lease when it ends (all or none; an attempt after a kill replaces
-- them with the same draw).
CREATE TABLE job_samples (
    job_id       INTEGER NOT NULL REFERENCES jobs (id),
    idx          INTEGER NOT NULL, -- row b answers prompt b / K
    prompt_index INTEGER NOT NULL,
    prompt       TEXT    NOT NULL,
    response     TEXT    NOT NULL,
    gold         REAL,             -- the demo task's gold score
    scores       TEXT    NOT NULL, -- JSON array: each reward model's score (null: none)
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;

-- The loop's pending loop-sample job: the round's samples (phase sampling)
-- or the new policy's evaluation (phase policy); NULL between them.
ALTER TABLE loops ADD COLUMN sample_job_id INTEGER REFERENCES jobs (id);
-- Why a succeeded loop stopped: 'rounds', or 'plateau' of gold / proxy.
ALTER TABLE loops ADD COLUMN stop_reason TEXT;
ALTER TABLE loop_rounds ADD COLUMN sample_job_id INTEGER REFERENCES jobs (id);
ALTER TABLE loop_rounds ADD COLUMN eval_job_id INTEGER REFERENCES jobs (id);
