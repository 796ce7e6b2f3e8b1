-- v0 -> v13 (compatible with v10+): Latest revision

-- All times are unix milliseconds; all JIDs are bare.

-- A portal is a Matrix room the bridge carries to one XMPP address: the
-- person of a direct portal, the multi-user chat of a group one.
CREATE TABLE portal (
	room_id    TEXT   PRIMARY KEY,
	kind       TEXT   NOT NULL CHECK (kind IN ('direct', 'group')),
	jid        TEXT   NOT NULL,
	created_at BIGINT NOT NULL
);

-- The members of a portal, on both sides, and what each told the other
-- side: receipts are "up to", so each member's move a watermark (a row of
-- the id map, forward only) instead of marking each of thousands of rows.
-- A Matrix member's are the messages from XMPP they acknowledged to XMPP
-- as delivered and displayed; an XMPP member's read_upto is the newest
-- message from Matrix they displayed, where their ghost's m.read stands.
CREATE TABLE portal_member (
	room_id        TEXT   NOT NULL REFERENCES portal (room_id) ON DELETE CASCADE,
	-- A Matrix user's ID (it starts with '@') or an XMPP member's bare JID.
	member         TEXT   NOT NULL,
	-- The person's bare JID for the Matrix member of a direct portal, NULL
	-- for every other member: a (Matrix user, person) pair has one direct
	-- portal at most, and the bridge looks it up by the pair.
	direct_jid     TEXT,
	delivered_upto BIGINT NOT NULL DEFAULT 0,
	read_upto      BIGINT NOT NULL DEFAULT 0,
	-- How a Matrix member's puppet joins the chat of a group portal, as the
	-- bot's join was told: the nick and the room's password (XEP-0045
	-- §7.2.6); '' for none.
	nick           TEXT   NOT NULL DEFAULT '',
	muc_password   TEXT   NOT NULL DEFAULT '',
	PRIMARY KEY (room_id, member),
	CONSTRAINT portal_member_direct_unique UNIQUE (member, direct_jid)
);
-- A multi-user chat has one portal at most, found by its JID when its
-- messages and presences arrive.
CREATE UNIQUE INDEX portal_group_jid_idx ON portal (jid) WHERE kind = 'group';

-- The id map: every message that crossed the bridge, so that receipts and
-- markers arriving later on either side can be matched to it.
CREATE TABLE message (
	-- only: sqlite (line commented)
--	rowid          INTEGER PRIMARY KEY,
	-- only: postgres
	rowid          BIGSERIAL PRIMARY KEY,
	-- '' until the portal is known.
	room_id        TEXT    NOT NULL DEFAULT '',
	-- NULL (not '') until the Matrix side has it, so that UNIQUE ignores it.
	event_id       TEXT    UNIQUE,
	xmpp_id        TEXT    NOT NULL DEFAULT '',
	origin_id      TEXT    NOT NULL DEFAULT '',
	stanza_id      TEXT    NOT NULL DEFAULT '',
	peer_jid       TEXT    NOT NULL,
	peer_resource  TEXT    NOT NULL DEFAULT '',
	direction      TEXT    NOT NULL CHECK (direction IN ('xmpp', 'matrix')),
	-- The Matrix member it is of: the sender of a 'matrix' message, the
	-- recipient of an 'xmpp' one in a direct portal ('' in a group).
	mxid           TEXT    NOT NULL DEFAULT '',
	-- Who sent it, as portal_member names members: the Matrix user of a
	-- 'matrix' message, the person of an 'xmpp' one in a direct portal,
	-- the occupant (the chat's JID / its key) in a group.
	sender         TEXT    NOT NULL DEFAULT '',
	body           TEXT    NOT NULL DEFAULT '',
	ts             BIGINT  NOT NULL,
	want_receipt   BOOLEAN NOT NULL DEFAULT false,
	want_delivered BOOLEAN NOT NULL DEFAULT false,
	want_displayed BOOLEAN NOT NULL DEFAULT false,
	want_composing BOOLEAN NOT NULL DEFAULT false,
	want_offline   BOOLEAN NOT NULL DEFAULT false,
	markable       BOOLEAN NOT NULL DEFAULT false,
	-- NULL until it happened.
	delivered_at   BIGINT,
	displayed_at   BIGINT,
	-- What this message points at (mapping/relations.go): '' for a plain
	-- message, else 'replace', 'reply', 'reaction' or 'redact', with the row
	-- of the message it points at (for an edit, always the original) and,
	-- for a reaction, its key.
	rel_kind       TEXT    NOT NULL DEFAULT '',
	rel_to         BIGINT  NOT NULL DEFAULT 0,
	rel_key        TEXT    NOT NULL DEFAULT ''
);
-- A stanza id names a message only together with its peer and the way it
-- travelled; a message without one can never be acknowledged, so it never
-- conflicts. Lookups must repeat "xmpp_id <> ''" for PostgreSQL to use it.
CREATE UNIQUE INDEX message_xmpp_id_idx ON message (peer_jid, xmpp_id, direction) WHERE xmpp_id <> '';
CREATE INDEX message_room_ts_idx ON message (room_id, ts);
-- The "up to" expansion of an m.read: the not yet displayed messages from
-- XMPP of a room up to a row. Partial, so that it holds only what is still
-- unread, and only what an m.read can name.
CREATE INDEX message_unread_idx ON message (room_id, rowid) WHERE displayed_at IS NULL AND direction = 'xmpp';
-- The newest message from XMPP of a room that asked for XEP-0022 composing
-- events, for typing from Matrix.
CREATE INDEX message_composable_idx ON message (room_id, rowid) WHERE want_composing AND direction = 'xmpp';
-- Messages from XMPP not yet on Matrix, for receipts that arrive before
-- their event's id (mapping/early_receipts.go). Holds only those.
CREATE INDEX message_unsent_idx ON message (peer_jid, mxid) WHERE event_id IS NULL;
-- What points at a message: its reactions, and what redacted them.
CREATE INDEX message_rel_idx ON message (rel_to, rel_kind) WHERE rel_to <> 0;

-- Transactions pushed by the homeserver, stored before it gets its 200 and
-- kept for a while after processing so that a retried transaction is
-- recognised (the newest 10,000 and those of the last hour, database/txn.go).
CREATE TABLE txn_inbox (
	-- Arrival order: received_at can tie within a millisecond.
	-- only: sqlite (line commented)
--	seq         INTEGER PRIMARY KEY,
	-- only: postgres
	seq         BIGSERIAL PRIMARY KEY,
	txn_id      TEXT    NOT NULL UNIQUE,
	-- only: sqlite (line commented)
--	body        BLOB    NOT NULL,
	-- only: postgres
	body        BYTEA   NOT NULL,
	done        BOOLEAN NOT NULL DEFAULT false,
	received_at BIGINT  NOT NULL
);
-- The transactions still to process, for PendingTxns. Holds only those.
CREATE INDEX txn_inbox_pending_idx ON txn_inbox (seq) WHERE done=false;

-- What of the inbox the bridge could never process: an event whose data
-- the store refused, that could not be read, or whose handling panicked (or
-- a whole transaction, event_id ''). It is set aside, so that what came
-- behind it goes on, and kept here (what, why, when), so that nothing
-- accepted is lost silently (mapping/frommatrix.go). One row per item,
-- however often it is met.
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
	-- Why, in a word (refused, decode, panic), and the error's text.
	reason   TEXT   NOT NULL,
	error    TEXT   NOT NULL,
	at       BIGINT NOT NULL,
	CONSTRAINT set_aside_item_unique UNIQUE (txn_id, event_id)
);

-- Sends still owed to either server, retried with backoff until done.
CREATE TABLE outbox (
	-- AUTOINCREMENT so that SQLite never reuses the id of a deleted job,
	-- which a slow worker could still be holding.
	-- only: sqlite (line commented)
--	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	-- only: postgres
	id         BIGSERIAL PRIMARY KEY,
	-- Each kind has one handler; a job without one could never run.
	kind       TEXT    NOT NULL CHECK (kind <> ''),
	message_id BIGINT  REFERENCES message (rowid) ON DELETE CASCADE,
	-- only: sqlite (line commented)
--	payload    BLOB,
	-- only: postgres
	payload    BYTEA,
	attempts   INTEGER NOT NULL DEFAULT 0,
	not_before BIGINT  NOT NULL,
	last_error TEXT    NOT NULL DEFAULT '',
	-- Jobs of one lane keep their order; lanes run in parallel.
	lane       TEXT    NOT NULL DEFAULT '',
	-- When it was stored, for the age of the oldest owed send (metrics).
	created_at BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX outbox_not_before_idx ON outbox (not_before);

-- The rooms where a user talks to the bot (mapping/commands.go).
CREATE TABLE management_room (
	room_id TEXT PRIMARY KEY,
	mxid    TEXT NOT NULL
);

-- A user's own settings, set through the bot; NULL: the config's default.
-- receipts_on_since: when receipts last came on after being off (0: never).
CREATE TABLE user_setting (
	mxid              TEXT PRIMARY KEY,
	receipts          BOOLEAN,
	typing            BOOLEAN,
	receipts_on_since BIGINT NOT NULL DEFAULT 0
);

-- Small pieces of bridge state, such as the /sync token.
CREATE TABLE kv (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);

-- Presence subscriptions (RFC 6121 §3) between a Matrix user's puppet and an
-- XMPP person, seen from the puppet: from_them is "from" in the puppet's
-- roster (the person sees the puppet's presence), to_them is "to" (the
-- person approved the puppet's request). No row means neither.
CREATE TABLE subscription (
	mxid      TEXT    NOT NULL,
	jid       TEXT    NOT NULL,
	from_them BOOLEAN NOT NULL DEFAULT false,
	to_them   BOOLEAN NOT NULL DEFAULT false,
	PRIMARY KEY (mxid, jid)
);

-- What the puppet of a Matrix user shows XMPP of them: the display name
-- and avatar last seen on Matrix, and the avatar as a small image for its
-- vCard (XEP-0054 PHOTO) with the SHA-1 its presence carries (XEP-0153).
-- No row: not looked up yet.
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
