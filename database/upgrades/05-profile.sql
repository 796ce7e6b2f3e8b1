-- v4 -> v5 (compatible with v1+): The profiles of the puppets
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
