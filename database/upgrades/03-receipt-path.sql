-- v2 -> v3 (compatible with v1+): Receipt lookups that do not grow with a room's history
-- The newest message from Matrix that the XMPP person displayed, by row: the
-- ghost's m.read is "up to" and forward only, so a burst of markers moves
-- this watermark once instead of each marker looking for the newest
-- displayed row (which walked the room backwards).
ALTER TABLE portal ADD COLUMN peer_read_upto BIGINT NOT NULL DEFAULT 0;
-- Only the messages from XMPP are read "up to" from Matrix: messages from
-- Matrix that XMPP never displayed stayed in the old index and an m.read
-- walked over all of them.
DROP INDEX message_unread_idx;
CREATE INDEX message_unread_idx ON message (room_id, rowid) WHERE displayed_at IS NULL AND direction = 'xmpp';
-- Typing from Matrix names the newest message from XMPP that asked for
-- XEP-0022 composing events.
CREATE INDEX message_composable_idx ON message (room_id, rowid) WHERE want_composing AND direction = 'xmpp';
