-- v4 -> v5 (compatible with v1+): The profiles of the puppets and the ghosts
-- What the puppet of a Matrix user shows XMPP of them (database/profile.go).
CREATE TABLE puppet_profile (
	mxid       TEXT   PRIMARY KEY,
	name       TEXT   NOT NULL,
	avatar_url TEXT   NOT NULL,
	-- only: sqlite (line commented)
--	photo      BLOB,
	-- only: postgres
	photo      BYTEA,
	photo_type TEXT   NOT NULL,
	photo_sha1 TEXT   NOT NULL,
	updated_at BIGINT NOT NULL
);

-- What the bridge last gave an XMPP person's ghost from their vCard
-- (XEP-0054): its name (named_by_nick: a XEP-0172 nick named it since,
-- which a vCard does not override) and the SHA-1 of the photo its avatar
-- was uploaded from. No row: nothing yet.
CREATE TABLE ghost_profile (
	jid           TEXT    PRIMARY KEY,
	name          TEXT    NOT NULL,
	named_by_nick BOOLEAN NOT NULL DEFAULT false,
	photo_sha1    TEXT    NOT NULL,
	avatar_url    TEXT    NOT NULL,
	updated_at    BIGINT  NOT NULL
);
