-- 015_project_access: who may see and rank which project, what a project's
-- admin can change about it, retired comparisons, and annotators whose
-- rankings are left out of exports and training.

-- A project's members: the annotator and viewer tokens granted it. Admins
-- need no row (they see every project). role is what the token may do in
-- this project: 'annotator' (see and rank) or 'viewer' (see only); a
-- viewer token can only be granted 'viewer'. Removing a member or revoking
-- the token keeps its rankings.
CREATE TABLE project_members (
    project_id INTEGER NOT NULL REFERENCES projects (id),
    token_id   INTEGER NOT NULL REFERENCES api_tokens (id),
    role       TEXT    NOT NULL CHECK (role IN ('annotator', 'viewer')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, token_id)
) WITHOUT ROWID;
CREATE INDEX project_members_by_token ON project_members (token_id, project_id);

-- Before this migration every token saw every project. So that an upgrade
-- does not lock a working annotation team out of the projects it is
-- ranking, every live annotator and viewer token is made a member of every
-- existing project, in its own role (docs/server.md, "Project access").
-- Tokens and projects created afterwards start with no grants.
INSERT INTO project_members (project_id, token_id, role, created_at)
    SELECT p.id, t.id, t.role, CAST(strftime('%s', 'now') AS INTEGER)
    FROM projects p CROSS JOIN api_tokens t
    WHERE t.role IN ('annotator', 'viewer') AND t.revoked_at IS NULL;

-- PATCH /v1/projects/{id}: a description, and two states. locked_at: no
-- new rankings (nor leases); archived_at: hidden from lists and read-only.
ALTER TABLE projects ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE projects ADD COLUMN locked_at INTEGER;
ALTER TABLE projects ADD COLUMN archived_at INTEGER;

-- A retired comparison is no longer handed out by `next` nor ranked; its
-- rankings stay, and exports flag them (or leave them out on request).
ALTER TABLE comparisons ADD COLUMN retired_at INTEGER;

-- Annotators an admin excluded from a project: exports and the reward/DPO
-- jobs that read the project's rankings leave their rankings out. The
-- rankings themselves stay (include again to bring them back).
CREATE TABLE project_excluded_annotators (
    project_id  INTEGER NOT NULL REFERENCES projects (id),
    token_id    INTEGER NOT NULL REFERENCES api_tokens (id),
    excluded_at INTEGER NOT NULL,
    PRIMARY KEY (project_id, token_id)
) WITHOUT ROWID;
