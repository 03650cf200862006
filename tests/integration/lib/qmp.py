"""Shared by the QMP integration scripts: PASS/FAIL/SKIP reporting, a QMP
client (replies in order, events collected aside) and child processes that
are killed by their PID at the end.  Python 3 standard library only.
"""

import json
import os
import select
import signal
import socket
import subprocess
import time

TIMEOUT = 10.0

procs = []
failures = 0


def passed(name):
    print(f'PASS: {name}', flush=True)


def failed(name, why):
    global failures
    failures += 1
    print(f'FAIL: {name}: {why}', flush=True)


def skipped(name, why):
    print(f'SKIP: {name} ({why})', flush=True)


def check(name, cond, why=''):
    if cond:
        passed(name)
    else:
        failed(name, why)
    return cond


class QmpError(Exception):
    pass


class Qmp:
    """One QMP client: replies in order, events collected aside."""

    def __init__(self, path, negotiate=True):
        deadline = time.time() + TIMEOUT
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        self.buf = b''
        self.events = []
        self.greeting = self.read()
        if negotiate:
            reply = self.cmd('qmp_capabilities')
            if reply != {'return': {}}:
                raise QmpError(f'qmp_capabilities: {reply}')

    def send(self, text):
        if isinstance(text, str):
            text = text.encode()
        self.sock.sendall(text)

    def read(self, timeout=TIMEOUT):
        """The next message, or None at EOF; raises on a timeout."""
        deadline = time.time() + timeout
        while b'\n' not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise QmpError('no reply within %.0f s' % timeout)
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b'\n', 1)
        return json.loads(line)

    def reply(self, timeout=TIMEOUT):
        """The next message that is not an event."""
        while True:
            msg = self.read(timeout)
            if msg is None or 'event' not in msg:
                return msg
            self.events.append(msg)

    def cmd(self, name, args=None, **kw):
        req = {'execute': name}
        if args is not None:
            req['arguments'] = args
        req.update(kw)
        self.send(json.dumps(req) + '\n')
        return self.reply()

    def wait_event(self, name, timeout=TIMEOUT):
        """The first event called name (collected already, or within timeout), or None."""
        deadline = time.time() + timeout
        while True:
            for e in self.events:
                if e['event'] == name:
                    self.events.remove(e)
                    return e
            try:
                msg = self.read(max(0.01, deadline - time.time()))
            except QmpError:
                return None
            if msg is None:
                return None
            if 'event' in msg:
                self.events.append(msg)

    def at_eof(self, timeout=TIMEOUT):
        try:
            while True:
                msg = self.read(timeout)
                if msg is None:
                    return True
                if 'event' in msg:
                    self.events.append(msg)
        except (QmpError, OSError):
            return False

    def closed(self, timeout=TIMEOUT):
        """Whether the server hung up (EOF or a reset) within timeout."""
        try:
            return self.at_eof(timeout) or self.read(0.1) is None
        except OSError:
            return True
        except QmpError:
            return False

    def close(self):
        self.sock.close()


def start(argv, **kw):
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, **kw)
    procs.append(p)
    return p


def kill_all():
    """Kill (by PID) every process start() started that still runs."""
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()


def wait_exit(p, timeout=TIMEOUT):
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


