-- 014_placeholder: empty, only so that 015 is in sequence on branch h-access.
-- The lead drops this file at merge (the real 014 comes from another branch).
SELECT 1;
