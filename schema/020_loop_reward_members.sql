-- An online loop's reward ensemble (docs/online_loop.md): each round
-- trains the loop's `ensemble` reward models side by side, member e
-- warm-started from member e of the last round that trained one (from the
-- SFT model at first; member 0 from the loop's reward model) with the
-- reward seed + e. Member 0 is the loop's reward model (the policy trains
-- against it; loop_rounds.reward_job_id / reward_checkpoint_id); the next
-- round's `disagreement` scores its samples with all of them.
CREATE TABLE loop_reward_members (
    loop_id       INTEGER NOT NULL REFERENCES loops (id),
    round         INTEGER NOT NULL,
    member        INTEGER NOT NULL CHECK (member >= 0),
    job_id        INTEGER NOT NULL REFERENCES jobs (id),
    checkpoint_id INTEGER REFERENCES checkpoints (id), -- its final one, once the round moved on
    PRIMARY KEY (loop_id, round, member)
) WITHOUT ROWID;

-- The rounds before: one member each.
INSERT INTO loop_reward_members (loop_id, round, member, job_id, checkpoint_id)
SELECT loop_id, round, 0, reward_job_id, reward_checkpoint_id FROM loop_rounds
WHERE reward_job_id IS NOT NULL;
