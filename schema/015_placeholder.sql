-- 015_placeholder: an empty migration standing in for the one another branch
-- adds with this number; drop this file when that branch is merged.
SELECT 1;
