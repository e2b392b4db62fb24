CREATE TABLE IF NOT EXISTS migrated_at (at timestamptz NOT NULL DEFAULT now());
INSERT INTO migrated_at DEFAULT VALUES;
