-- A running job that has begun publishing its version (writing, recording, registering
-- it) can no longer be cancelled: a cancel then would leave a version without its job.
ALTER TABLE jobs ADD COLUMN publishing INTEGER NOT NULL DEFAULT 0 CHECK (publishing IN (0, 1));
