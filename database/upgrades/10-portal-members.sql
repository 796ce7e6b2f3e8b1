-- v9 -> v10 (compatible with v10+): A portal is a room with members
-- A v9 portal was the room of one pair, with the pair's watermarks on its
-- row. It becomes a direct portal with two members: the Matrix user, with
-- what she told XMPP (delivered_upto, read_upto), and the person, with what
-- he displayed (peer_read_upto). The table is built anew, as SQLite cannot
-- drop a column of a UNIQUE constraint.
CREATE TABLE portal_v10 (
	room_id    TEXT   PRIMARY KEY,
	kind       TEXT   NOT NULL CHECK (kind IN ('direct', 'group')),
	jid        TEXT   NOT NULL,
	created_at BIGINT NOT NULL
);
INSERT INTO portal_v10 (room_id, kind, jid, created_at)
	SELECT room_id, 'direct', jid, created_at FROM portal;

CREATE TABLE portal_member (
	room_id        TEXT   NOT NULL REFERENCES portal_v10 (room_id) ON DELETE CASCADE,
	member         TEXT   NOT NULL,
	direct_jid     TEXT,
	delivered_upto BIGINT NOT NULL DEFAULT 0,
	read_upto      BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (room_id, member),
	CONSTRAINT portal_member_direct_unique UNIQUE (member, direct_jid)
);
INSERT INTO portal_member (room_id, member, direct_jid, delivered_upto, read_upto)
	SELECT room_id, mxid, jid, delivered_upto, read_upto FROM portal;
INSERT INTO portal_member (room_id, member, read_upto)
	SELECT room_id, jid, peer_read_upto FROM portal;

DROP TABLE portal;
ALTER TABLE portal_v10 RENAME TO portal;
-- only: postgres
ALTER INDEX portal_v10_pkey RENAME TO portal_pkey;
