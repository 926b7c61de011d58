-- 008_metrics_epoch: a per-job counter of metric rewrites, for rlhfd's cache
-- of running jobs' series (server/read_cache.h).
--
-- jobs.metrics_epoch goes up, in the writer's own transaction, whenever a
-- metrics row of the job could change anything a reader has already seen:
-- a row inserted at a step not after the last step of its (job, name)
-- series (a rerun rewriting steps, INSERT OR REPLACE of an existing row, a
-- gap filled), any UPDATE and any DELETE. A pure append (a step after the
-- series' last) leaves it alone. So between two snapshots with the same
-- epoch, every series of the job only grew at its end: a reader that
-- remembers a series up to step S and sees the same epoch needs only the
-- rows after S. The triggers fire for every writer (rlhf-train workers,
-- rlhfd, a script with the sqlite3 shell), so nothing can bypass them.
ALTER TABLE jobs ADD COLUMN metrics_epoch INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER metrics_epoch_insert BEFORE INSERT ON metrics
WHEN NEW.step <= (SELECT max(step) FROM metrics WHERE job_id = NEW.job_id AND name = NEW.name)
BEGIN
    UPDATE jobs SET metrics_epoch = metrics_epoch + 1 WHERE id = NEW.job_id;
END;

CREATE TRIGGER metrics_epoch_update AFTER UPDATE ON metrics
BEGIN
    UPDATE jobs SET metrics_epoch = metrics_epoch + 1 WHERE id IN (OLD.job_id, NEW.job_id);
END;

CREATE TRIGGER metrics_epoch_delete AFTER DELETE ON metrics
BEGIN
    UPDATE jobs SET metrics_epoch = metrics_epoch + 1 WHERE id = OLD.job_id;
END;
