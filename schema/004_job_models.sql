-- 004_job_models: what reward and ppo jobs read besides datasets.
--
-- jobs.parent_checkpoint_id (001) is the job's `model`: the checkpoint it
-- starts from (sft: optional init; reward: the SFT model under the scalar
-- head; ppo: the policy's init and frozen reference). A ppo job also names
-- the reward model it optimises against. A reward job may train on an
-- annotation project's rankings instead of a preference dataset; the
-- rankings it reads are fixed when the job is created (ids up to
-- training_ranking_cutoff), as a dataset's rows are fixed by its upload, so
-- a retried attempt trains on the same data.
ALTER TABLE jobs ADD COLUMN reward_checkpoint_id INTEGER REFERENCES checkpoints (id);
ALTER TABLE jobs ADD COLUMN training_project_id INTEGER REFERENCES projects (id);
ALTER TABLE jobs ADD COLUMN training_ranking_cutoff INTEGER;
