-- v11 -> v12 (compatible with v10+): A message has a sender
-- A message belongs to a room and to the member who sent it: the Matrix
-- user of a message from Matrix; the person of one from XMPP in a direct
-- portal; the occupant (the chat's JID with its key as resource, as
-- portal_member names it) of one from a multi-user chat. Before v12 a
-- group's message kept its occupant's nick as peer_resource.
ALTER TABLE message ADD COLUMN sender TEXT NOT NULL DEFAULT '';
UPDATE message SET sender = mxid WHERE direction = 'matrix';
UPDATE message SET sender = peer_jid WHERE direction = 'xmpp'
	AND room_id NOT IN (SELECT room_id FROM portal WHERE kind = 'group');
UPDATE message SET sender = peer_jid || '/' || peer_resource WHERE direction = 'xmpp'
	AND room_id IN (SELECT room_id FROM portal WHERE kind = 'group');
