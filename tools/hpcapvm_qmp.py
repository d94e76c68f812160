# SPDX-License-Identifier: MIT
"""QMP for tools/hpcap-vm: hot removal and re-adding of the guest's NIC.

QEMU serves its machine protocol (QMP, JSON lines) on a unix socket
(`-qmp unix:PATH,server=on,wait=off`). `Qmp` is the small client the bench
needs: the greeting, `qmp_capabilities`, a command and its `return` or
`error`, and asynchronous events (kept until someone waits for them).

`HotplugService` lets a guest script remove and re-add a device by its QEMU
id while it runs: the guest writes a request into the run's share,
`hotplug/req.K` (JSON `{"op": "del" | "add", "id": "nic0"}`), the host
issues `device_del` (and waits for QEMU's `DEVICE_DELETED` event, which
QEMU sends once the guest has powered the slot off) or `device_add` (with
the properties the device was first created with) and answers in
`hotplug/done.K` (JSON: `ok`, `error`, `seconds`, the host's Unix times).
The guest side is `hotplug_del` / `hotplug_add` in tests/vm/guest/vm-lib.sh.
"""

import json
import os
import socket
import threading
import time
from pathlib import Path


class QmpError(Exception):
    """QEMU answered a command with an error, or the connection failed."""


class Qmp:
    """One QMP connection: commands are answered in order; events are kept
    in `events` (with the host's receive time) until taken by wait_event."""

    def __init__(self, path, connect_timeout=120.0):
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError as e:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise QmpError(f"cannot connect to QMP at {path}: {e}") from e
                time.sleep(0.05)
        self.file = self.sock.makefile("rb")
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.events = []
        self.replies = []
        self.closed = False
        greeting = self._read()
        if greeting is None or "QMP" not in greeting:
            raise QmpError(f"no QMP greeting: {greeting!r}")
        self.reader = threading.Thread(target=self._reader, name="qmp-reader", daemon=True)
        self.reader.start()
        self.execute("qmp_capabilities")

    def _read(self):
        line = self.file.readline()
        if not line:
            return None
        return json.loads(line)

    def _reader(self):
        while True:
            try:
                msg = self._read()
            except (OSError, ValueError):
                msg = None
            with self.cond:
                if msg is None:
                    self.closed = True
                    self.cond.notify_all()
                    return
                if "event" in msg:
                    msg["host_time"] = time.time()
                    self.events.append(msg)
                else:
                    self.replies.append(msg)
                self.cond.notify_all()

    def execute(self, command, arguments=None, timeout=60.0):
        """Runs COMMAND; returns its `return` value or raises QmpError."""
        req = {"execute": command}
        if arguments:
            req["arguments"] = arguments
        with self.cond:
            self.sock.sendall(json.dumps(req).encode() + b"\n")
            deadline = time.monotonic() + timeout
            while not self.replies:
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    raise QmpError(f"no answer to {command}" + (" (QEMU closed QMP)" if self.closed else ""))
                self.cond.wait(left)
            reply = self.replies.pop(0)
        if "error" in reply:
            e = reply["error"]
            raise QmpError(f"{command}: {e.get('class')}: {e.get('desc')}")
        return reply.get("return")

    def wait_event(self, name, match=None, timeout=60.0):
        """The first kept event NAME whose data includes MATCH (removed from
        the list); raises QmpError after TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i, ev in enumerate(self.events):
                    data = ev.get("data", {})
                    if ev["event"] == name and all(data.get(k) == v for k, v in (match or {}).items()):
                        return self.events.pop(i)
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    raise QmpError(f"no {name} event {match or ''} within {timeout:.0f} s"
                                   + (" (QEMU closed QMP)" if self.closed else ""))
                self.cond.wait(left)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class HotplugService:
    """Serves the guest's hotplug requests (see the module doc) from the
    run's share directory SHARE/hotplug while QEMU runs. DEVICES maps a QEMU
    device id to the device_add arguments it was created with; BEFORE_ADD
    (optional) is called with the id before a device_add (e.g. to start the
    vfio-user server again) and returns arguments to merge in."""

    DEL_TIMEOUT = 180.0  # pciehp waits 5 s (the Attention Button's blink) first

    def __init__(self, qmp_path, share, devices, log, before_add=None):
        self.qmp_path = qmp_path
        self.dir = Path(share) / "hotplug"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.devices = devices
        self.log = log
        self.before_add = before_add
        self.stop = threading.Event()
        self.qmp = None
        self.thread = threading.Thread(target=self._run, name="hotplug", daemon=True)
        self.thread.start()

    def _answer(self, k, result):
        tmp = self.dir / f".done.{k}"
        tmp.write_text(json.dumps(result) + "\n")
        os.replace(tmp, self.dir / f"done.{k}")

    def _serve(self, k, req):
        op, dev = req.get("op"), req.get("id")
        t0 = time.time()
        res = {"op": op, "id": dev, "ok": False, "error": None, "request_unix_s": t0}
        try:
            if dev not in self.devices:
                raise QmpError(f"unknown device id {dev!r} (known: {', '.join(sorted(self.devices))})")
            if op == "del":
                self.qmp.execute("device_del", {"id": dev})
                ev = self.qmp.wait_event("DEVICE_DELETED", {"device": dev}, timeout=self.DEL_TIMEOUT)
                res["deleted_unix_s"] = ev["host_time"]
            elif op == "add":
                args = dict(self.devices[dev])
                if self.before_add:
                    args.update(self.before_add(dev) or {})
                self.qmp.execute("device_add", args)
            else:
                raise QmpError(f"unknown op {op!r} (del or add)")
            res["ok"] = True
        except (QmpError, OSError, ValueError) as e:
            res["error"] = str(e)
        res["seconds"] = time.time() - t0
        self.log(f"hotplug: {op} {dev}: " + ("done" if res["ok"] else f"FAILED: {res['error']}")
                 + f" in {res['seconds']:.1f} s")
        self._answer(k, res)

    def _run(self):
        try:
            self.qmp = Qmp(self.qmp_path)
        except QmpError as e:
            self.log(f"hotplug: {e}")
            return
        served = set()
        while not self.stop.is_set():
            for p in sorted(self.dir.glob("req.*")):
                k = p.name.split(".", 1)[1]
                if k in served:
                    continue
                served.add(k)
                try:
                    req = json.loads(p.read_text())
                except (OSError, ValueError) as e:
                    self._answer(k, {"ok": False, "error": f"bad request {p.name}: {e}"})
                    continue
                self._serve(k, req)
            self.stop.wait(0.1)
        self.qmp.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
