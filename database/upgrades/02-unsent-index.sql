-- v1 -> v2 (compatible with v1+): Index of the messages from XMPP not yet on Matrix
-- Receipts that arrive before their event's id wait for these
-- (mapping/early_receipts.go).
CREATE INDEX message_unsent_idx ON message (peer_jid, mxid) WHERE event_id IS NULL;
