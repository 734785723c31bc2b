#!/usr/bin/env python3
"""stomp.py (Debian's python3-stomp) as an independent STOMP 1.2 peer of
edgeway's gateway. Usage: stomppy_peer.py HOST PORT

It connects with heart-beats, subscribes in client-individual mode, sends
and receives (custom headers, a binary body, a transaction), NACKs one
message and checks it comes back redelivered, prints READY and waits for
one message published on the MQTT side (py/out), then disconnects with a
receipt. Exit status 0 means every check passed.
"""
import sys
import threading
import time

import stomp

HOST, PORT = sys.argv[1], int(sys.argv[2])
WAIT = 5.0


class Peer(stomp.ConnectionListener):
    def __init__(self):
        self.cv = threading.Condition()
        self.msgs = []
        self.receipts = set()
        self.errors = []

    def on_message(self, frame):
        with self.cv:
            self.msgs.append(frame)
            self.cv.notify_all()

    def on_receipt(self, frame):
        with self.cv:
            self.receipts.add(frame.headers.get("receipt-id"))
            self.cv.notify_all()

    def on_error(self, frame):
        with self.cv:
            self.errors.append(frame)
            self.cv.notify_all()

    def wait(self, what, cond):
        deadline = time.monotonic() + WAIT
        with self.cv:
            while not cond():
                left = deadline - time.monotonic()
                if left <= 0 or self.errors:
                    fail("waiting for %s; errors %r" % (what, [e.headers for e in self.errors]))
                self.cv.wait(left)

    def take(self, n):
        self.wait("%d messages" % n, lambda: len(self.msgs) >= n)
        with self.cv:
            out, self.msgs = self.msgs[:n], self.msgs[n:]
        return out


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


peer = Peer()
conn = stomp.Connection12([(HOST, PORT)], heartbeats=(200, 200), auto_decode=False, reconnect_attempts_max=1)
conn.set_listener("peer", peer)
conn.connect("py", "secret", wait=True)

conn.subscribe("py/in/#", id="s1", ack="client-individual", headers={"receipt": "sub"})
peer.wait("subscribe receipt", lambda: "sub" in peer.receipts)

conn.send("py/in/text", "héllo", headers={"x-trace": "py:1", "receipt": "s1"})
conn.send("py/in/bin", b"\x00\x01\xff", content_type="application/octet-stream")
text, binm = peer.take(2)
check(text.body == "héllo".encode(), "text body %r" % text.body)
check(text.headers.get("x-trace") == "py:1", "custom header %r" % text.headers)
check(text.headers.get("destination") == "py/in/text", "destination %r" % text.headers)
check(binm.body == b"\x00\x01\xff", "binary body %r" % binm.body)
check(binm.headers.get("content-type") == "application/octet-stream", "content-type %r" % binm.headers)

conn.nack(binm.headers["ack"])
(again,) = peer.take(1)
check(again.body == b"\x00\x01\xff" and again.headers.get("redelivered") == "true", "redelivery %r" % again.headers)
conn.ack(text.headers["ack"])
conn.ack(again.headers["ack"])

tx = conn.begin()
conn.send("py/in/tx", "in a transaction", transaction=tx)
conn.commit(tx, headers={"receipt": "commit"})
peer.wait("commit receipt", lambda: "commit" in peer.receipts)
(txm,) = peer.take(1)
check(txm.body == b"in a transaction", "transaction body %r" % txm.body)
conn.ack(txm.headers["ack"])

# Heart-beats both ways keep the connection through a quiet spell.
time.sleep(0.7)

conn.subscribe("py/out", id="s2", ack="auto", headers={"receipt": "sub2"})
peer.wait("subscribe receipt", lambda: "sub2" in peer.receipts)
print("READY", flush=True)
(down,) = peer.take(1)
check(down.body == b"from mqtt" and down.headers.get("subscription") == "s2", "from the broker %r %r" % (down.body, down.headers))

conn.disconnect(receipt="bye")
check(not peer.errors, "errors %r" % [e.headers for e in peer.errors])
print("OK", flush=True)
