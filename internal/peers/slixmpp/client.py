"""A real XMPP client for the end-to-end tests: slixmpp, with the receipt
policy of Gajim and Monal, which answer XEP-0184 requests only from contacts
allowed to see their presence (subscription "from" or "both"), as XEP-0184's
Security Considerations ask. slixmpp's own auto_ack would answer anyone, so it is off.

Run by internal/peers (Debian's python3 with python3-slixmpp):
    client.py ADDRESS JID PASSWORD [--refuse BARE_JID ...]
It approves every subscription request except those from --refuse JIDs,
and prints one JSON object a line on stdout for the test to read:
    {"event": "online"}
    {"event": "roster", "jid": J, "subscription": S}
    {"event": "subscribe", "jid": J, "approved": true|false}
    {"event": "message", "from": J, "id": I, "body": B, "acked": true|false, "subscription": S, "url": OOB_URL}
It reads commands from its standard input, one JSON object a line, and ends
when it closes:
    {"cmd": "send_file", "to": J, "path": P, "type": T, "service": S, "body": B}
        uploads P with XEP-0363 to the service S and sends its URL
        as the body (or B) and in XEP-0066, as Conversations does; says
        {"event": "sent_file", "url": U, "id": I}
    {"cmd": "download", "url": U}
        fetches U over HTTP; says {"event": "downloaded", "url": U, "sha256": H, "size": N}
        or {"event": "download_failed", "url": U, "error": E}
    {"cmd": "displayed", "to": J, "id": I}
        sends a XEP-0333 displayed marker for message I
"""

import asyncio
import hashlib
import json
import os
import sys
import urllib.request

import slixmpp


def say(**fields):
    print(json.dumps(fields), flush=True)


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, refuse):
        super().__init__(jid, password)
        self.refuse = set(refuse)
        # Subscriptions are decided here, not by the roster's defaults.
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0184", pconfig={"auto_ack": False})
        self.register_plugin("xep_0066")
        self.register_plugin("xep_0333")
        self.register_plugin("xep_0363")
        # The test server has no TLS; PLAIN over loopback is allowed there.
        self.register_plugin("feature_mechanisms", pconfig={"unencrypted_plain": True})
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("presence_subscribe", self.on_subscribe)
        self.add_event_handler("roster_update", self.on_roster)
        self.add_event_handler("message", self.on_message)

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

    async def command(self, line):
        cmd = json.loads(line)
        if cmd["cmd"] == "send_file":
            url = await self.upload(cmd["service"], cmd["path"], cmd["type"])
            msg = self.make_message(mto=cmd["to"], mbody=cmd.get("body") or url, mtype="chat")
            msg["oob"]["url"] = url
            msg.send()
            say(event="sent_file", url=url, id=msg["id"])
        elif cmd["cmd"] == "download":
            try:
                data = await asyncio.get_running_loop().run_in_executor(None, fetch, cmd["url"])
                say(event="downloaded", url=cmd["url"], sha256=hashlib.sha256(data).hexdigest(), size=len(data))
            except Exception as e:  # the test reads what went wrong
                say(event="download_failed", url=cmd["url"], error=str(e))
        elif cmd["cmd"] == "displayed":
            self.plugin["xep_0333"].send_marker(cmd["to"], cmd["id"], "displayed")


    async def upload(self, service, path, ctype):
        # slixmpp's own upload_file finds the service by a disco walk that
        # Python 3.11 refuses (asyncio.wait of coroutines): the slot is
        # asked here of the service named (XEP-0363 §4), then PUT (§5).
        with open(path, "rb") as f:
            data = f.read()
        iq = await self.plugin["xep_0363"].request_slot(service, os.path.basename(path), len(data), ctype)
        slot = iq["http_upload_slot"]
        headers = {"Content-Type": ctype, **{h["name"]: h["value"] for h in slot["put"]["headers"]}}
        req = urllib.request.Request(slot["put"]["url"], data=data, headers=headers, method="PUT")
        await asyncio.get_running_loop().run_in_executor(None, lambda: urllib.request.urlopen(req, timeout=30).close())
        return slot["get"]["url"]


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


async def main():
    address, jid, password = sys.argv[1], sys.argv[2], sys.argv[3]
    refuse = sys.argv[5:] if len(sys.argv) > 4 and sys.argv[4] == "--refuse" else []
    host, port = address.rsplit(":", 1)
    client = Client(jid, password, refuse)
    client.connect((host, int(port)), force_starttls=False, disable_starttls=True)
    loop = asyncio.get_running_loop()
    # Commands until the test closes our standard input.
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        if line.strip():
            try:
                await client.command(line)
            except Exception as e:  # the test reads what went wrong
                say(event="error", error=repr(e))
    client.disconnect()
    await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main())
