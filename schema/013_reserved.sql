-- 013: a placeholder so that 014 applies in sequence on the h-studies branch;
-- the migration numbered 013 of another branch takes its place when merged.
SELECT 1;
