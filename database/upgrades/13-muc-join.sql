-- v12 -> v13 (compatible with v10+): How a puppet joins a chat
-- The nick and the room's password (XEP-0045 §7.2.6) a Matrix member of a
-- group portal gave the bot's join, for every join of their puppet, the
-- rejoins after a restart too; '' for none.
ALTER TABLE portal_member ADD COLUMN nick TEXT NOT NULL DEFAULT '';
ALTER TABLE portal_member ADD COLUMN muc_password TEXT NOT NULL DEFAULT '';
