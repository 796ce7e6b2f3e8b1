"""A real XMPP client for the end-to-end tests: slixmpp, with the receipt
policy of Gajim and Monal, which answer XEP-0184 requests only from contacts
allowed to see their presence (subscription "from" or "both"), as XEP-0184's
Security Considerations ask. slixmpp's own auto_ack would answer anyone, so it is off.

Run by internal/peers (Debian's python3 with python3-slixmpp):
    client.py ADDRESS JID PASSWORD [--vcard-avatar] [--refuse BARE_JID ...]
It approves every subscription request except those from --refuse JIDs,
and prints one JSON object a line on stdout for the test to read:
    {"event": "online"}
    {"event": "roster", "jid": J, "subscription": S}
    {"event": "subscribe", "jid": J, "approved": true|false}
    {"event": "message", "from": J, "id": I, "body": B, "acked": true|false, "subscription": S, "url": OOB_URL}
    {"event": "groupchat", "from": J, "id": I, "body": B, "stanza_id": S, "markable": true|false}
    {"event": "marker", "from": J, "id": I, "type": T}    (a XEP-0333 <displayed/>)
    {"event": "done", "cmd": C, "error": E}                (a command carried out)
    {"event": "sent_file", "url": U, "id": I}               (send_file's upload and message)
    {"event": "downloaded", "url": U, "sha256": H, "size": N}  (download's file)
With --vcard-avatar it loads slixmpp's XEP-0153 plugin, which puts the hash
of its vCard photo into every available presence it sends, a chat's join
too, as Gajim and Conversations do.

It reads one JSON command a line on its standard input, and ends when that
closes:
    {"cmd": "avatar", "type": MIME, "data": BASE64}  publish the vCard photo (XEP-0153 set_avatar)
    {"cmd": "join", "room": R, "nick": N}            join a chat (XEP-0045), no history
    {"cmd": "groupchat", "room": R, "id": I, "body": B}  say B there, markable (XEP-0333)
    {"cmd": "displayed", "room": R, "id": I}         a groupchat <displayed/> of the room's id I
    {"cmd": "displayed", "to": J, "id": I}           a chat <displayed/> of message I
    {"cmd": "send_file", "to": J, "path": P, "type": T, "service": S, "body": B}
        upload P to the XEP-0363 service S and send its URL as the body (or
        B) and in XEP-0066, as Conversations does
    {"cmd": "download", "url": U}                    fetch U over HTTP
"""

import asyncio
import base64
import hashlib
import json
import os
import sys
import urllib.request

import slixmpp


def say(**fields):
    print(json.dumps(fields), flush=True)


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, refuse, vcard_avatar):
        super().__init__(jid, password)
        self.refuse = set(refuse)
        # Subscriptions are decided here, not by the roster's defaults.
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0184", pconfig={"auto_ack": False})
        self.register_plugin("xep_0045")
        self.register_plugin("xep_0333")
        self.register_plugin("xep_0359")
        self.register_plugin("xep_0066")
        self.register_plugin("xep_0363")
        if vcard_avatar:
            self.register_plugin("xep_0054")
            self.register_plugin("xep_0153")
        # The test server has no TLS; PLAIN over loopback is allowed there.
        self.register_plugin("feature_mechanisms", pconfig={"unencrypted_plain": True})
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("presence_subscribe", self.on_subscribe)
        self.add_event_handler("roster_update", self.on_roster)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("groupchat_message", self.on_groupchat)
        self.add_event_handler("marker_displayed", self.on_marker)

    async def on_start(self, _):
        await self.get_roster()
        self.send_presence()
        say(event="online")

    def on_subscribe(self, pres):
        who = pres["from"].bare
        approved = who not in self.refuse
        self.send_presence(pto=who, ptype="subscribed" if approved else "unsubscribed")
        say(event="subscribe", jid=who, approved=approved)

    def on_roster(self, iq):
        for item_jid, item in iq["roster"]["items"].items():
            say(event="roster", jid=str(item_jid), subscription=item["subscription"])

    def subscription(self, bare):
        if bare in self.client_roster:
            return self.client_roster[bare]["subscription"]
        return "none"

    def on_message(self, msg):
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        sub = self.subscription(msg["from"].bare)
        acked = bool(msg["request_receipt"]) and sub in ("from", "both")
        if acked:
            self.plugin["xep_0184"].ack(msg)
        say(event="message", **{"from": str(msg["from"]), "id": msg["id"], "body": msg["body"],
                                "acked": acked, "subscription": sub, "url": msg["oob"]["url"]})

    def on_groupchat(self, msg):
        if not msg["body"]:
            return
        sid = msg["stanza_id"]
        say(event="groupchat", **{"from": str(msg["from"]), "id": msg["id"], "body": msg["body"],
                                  "stanza_id": sid["id"] if sid["by"] == msg["from"].bare else "",
                                  "markable": msg.get_plugin("markable", check=True) is not None})

    def on_marker(self, msg):
        say(event="marker", **{"from": str(msg["from"]), "id": msg["displayed"]["id"], "type": msg["type"]})

    async def command(self, cmd):
        what = cmd.get("cmd")
        if what == "avatar":
            await self.plugin["xep_0153"].set_avatar(avatar=base64.b64decode(cmd["data"]), mtype=cmd["type"])
        elif what == "join":
            await self.plugin["xep_0045"].join_muc_wait(cmd["room"], cmd["nick"], maxstanzas=0, timeout=20)
        elif what == "groupchat":
            msg = self.make_message(mto=cmd["room"], mbody=cmd["body"], mtype="groupchat")
            msg["id"] = cmd["id"]
            msg.enable("markable")
            msg.send()
        elif what == "displayed" and "to" in cmd:
            self.plugin["xep_0333"].send_marker(cmd["to"], cmd["id"], "displayed")
        elif what == "displayed":
            # Not xep_0333's send_marker, which gives no type: a marker
            # in a room is of type groupchat (XEP-0333 §3).
            msg = self.make_message(mto=cmd["room"], mtype="groupchat")
            msg["displayed"]["id"] = cmd["id"]
            msg.send()
        elif what == "send_file":
            url = await self.upload(cmd["service"], cmd["path"], cmd["type"])
            msg = self.make_message(mto=cmd["to"], mbody=cmd.get("body") or url, mtype="chat")
            msg["oob"]["url"] = url
            msg.send()
            say(event="sent_file", url=url, id=msg["id"])
        elif what == "download":
            data = await asyncio.get_running_loop().run_in_executor(None, fetch, cmd["url"])
            say(event="downloaded", url=cmd["url"], sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        else:
            raise ValueError("unknown command %r" % what)

    async def upload(self, service, path, ctype):
        # slixmpp's own upload_file finds the service by a disco walk that
        # Python 3.11 refuses (asyncio.wait of coroutines): the slot is
        # asked here of the service named (XEP-0363 §4), then PUT (§6).
        with open(path, "rb") as f:
            data = f.read()
        iq = await self.plugin["xep_0363"].request_slot(service, os.path.basename(path), len(data), ctype)
        slot = iq["http_upload_slot"]
        headers = {"Content-Type": ctype, **{h["name"]: h["value"] for h in slot["put"]["headers"]}}
        req = urllib.request.Request(slot["put"]["url"], data=data, headers=headers, method="PUT")
        await asyncio.get_running_loop().run_in_executor(None, lambda: urllib.request.urlopen(req, timeout=30).close())
        return slot["get"]["url"]

    async def run_command(self, line):
        cmd = {}
        try:
            cmd = json.loads(line)
            await self.command(cmd)
            say(event="done", cmd=cmd.get("cmd"), error="")
        except Exception as e:  # told to the test, which decides
            say(event="done", cmd=cmd.get("cmd"), error=repr(e))


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


async def main():
    args = sys.argv[4:]
    vcard_avatar = "--vcard-avatar" in args
    if vcard_avatar:
        args.remove("--vcard-avatar")
    address, jid, password = sys.argv[1], sys.argv[2], sys.argv[3]
    refuse = args[1:] if args and args[0] == "--refuse" else []
    host, port = address.rsplit(":", 1)
    client = Client(jid, password, refuse, vcard_avatar)
    client.connect((host, int(port)), force_starttls=False, disable_starttls=True)
    loop = asyncio.get_running_loop()
    # Commands, one a line, until the test closes our standard input;
    # the tasks held until done (the loop keeps only weak references).
    tasks = set()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        if line.strip():
            tasks.add(loop.create_task(client.run_command(line)))
            tasks = {t for t in tasks if not t.done()}
    client.disconnect()
    await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main())
