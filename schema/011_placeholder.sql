-- 011: a placeholder for another branch's migration 011 (h-openai owns 012).
-- Delete this file when merging h-openai after the branch that brings 011.
SELECT 1;
