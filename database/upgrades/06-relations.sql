-- v5 -> v6 (compatible with v1+): What points at a message (edits, replies, reactions, retractions)
ALTER TABLE message ADD COLUMN rel_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE message ADD COLUMN rel_to BIGINT NOT NULL DEFAULT 0;
ALTER TABLE message ADD COLUMN rel_key TEXT NOT NULL DEFAULT '';
CREATE INDEX message_rel_idx ON message (rel_to, rel_kind) WHERE rel_to <> 0;
