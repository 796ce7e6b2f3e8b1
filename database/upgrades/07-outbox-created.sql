-- v6 -> v7 (compatible with v1+): When each owed send was stored, the bot's rooms and the users' settings
ALTER TABLE outbox ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;

-- The rooms where a user talks to the bot (mapping/commands.go).
CREATE TABLE management_room (
	room_id TEXT PRIMARY KEY,
	mxid    TEXT NOT NULL
);

-- A user's own settings, set through the bot; NULL: the config's default.
CREATE TABLE user_setting (
	mxid     TEXT PRIMARY KEY,
	receipts BOOLEAN,
	typing   BOOLEAN
);
