-- 010: a placeholder for another branch's migration 010 (h-openai owns 012).
-- Delete this file when merging h-openai after the branch that brings 010.
SELECT 1;
