-- 005_job_ranks: data-parallel jobs (POST /v1/jobs {"ranks": N}).
--
-- A job with ranks > 1 runs as `mpirun -np N --hostfile FILE rlhf-train
-- --db FILE --job ID` (server/worker_launch.h); 1 is a single process.
ALTER TABLE jobs ADD COLUMN ranks INTEGER NOT NULL DEFAULT 1 CHECK (ranks BETWEEN 1 AND 1024);
