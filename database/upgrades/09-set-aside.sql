-- v8 -> v9 (compatible with v1+): Inbox items set aside
CREATE TABLE set_aside (
	-- only: sqlite (line commented)
--	id       INTEGER PRIMARY KEY,
	-- only: postgres
	id       BIGSERIAL PRIMARY KEY,
	txn_id   TEXT   NOT NULL,
	event_id TEXT   NOT NULL DEFAULT '',
	room_id  TEXT   NOT NULL DEFAULT '',
	sender   TEXT   NOT NULL DEFAULT '',
	type     TEXT   NOT NULL DEFAULT '',
	reason   TEXT   NOT NULL,
	error    TEXT   NOT NULL,
	at       BIGINT NOT NULL,
	CONSTRAINT set_aside_item_unique UNIQUE (txn_id, event_id)
);
