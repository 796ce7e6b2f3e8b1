-- v6 -> v7 (compatible with v1+): When each owed send was stored
ALTER TABLE outbox ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;
