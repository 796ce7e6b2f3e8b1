-- v10 -> v11 (compatible with v10+): Group portals by their room
-- A multi-user chat has one portal at most, found by its JID when its
-- messages and presences arrive.
CREATE UNIQUE INDEX portal_group_jid_idx ON portal (jid) WHERE kind = 'group';
