#!/usr/bin/env python3
"""QMP conformance: spindle-sd (and spindle-vm) against QEMU's own replies.

Starts spindle-sd on a socket in a temporary directory, and
qemu-storage-daemon beside it with the same command line, and checks:

  - the protocol: the greeting, commands refused before qmp_capabilities,
    query-version / query-commands / query-status, the error replies for
    unknown commands, bad JSON (the connection goes on), non-objects,
    missing / mistyped / unexpected / nested arguments (QEMU's words,
    compared with qemu-storage-daemon's), "id" echoed, requests split and
    concatenated, several clients at once, a client leaving mid-command,
    a client sending too much, the socket's mode 0600;
  - the block commands: blockdev-add of file and raw, query-named-block-nodes,
    query-block and query-blockstats compared field by field with
    qemu-storage-daemon's replies to the same commands, blockdev-del,
    block_resize, dirty bitmaps (add, merge, clear, enable, disable, remove),
    blockdev-create;
  - the run state: quit with SHUTDOWN, SIGTERM, --pidfile/--daemonize,
    --export refused; and on spindle-vm (blkbench reading a raw disk on
    virtio-blk-pci): -S, stop and cont with STOP and RESUME and their
    timestamps, the vCPU threads gone and no guest I/O while paused,
    query-block / query-blockstats against qemu-system-x86_64's for the same
    -drive and -device, a write failing under werror=enospc (blkdebug):
    BLOCK_IO_ERROR, STOP, io-error, and cont retrying it; quit with SHUTDOWN.

Python 3 standard library only.  One PASS:/FAIL:/SKIP: line per check.
Every process it starts is killed by its PID at the end.
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'lib'))
import qmp as qmplib  # noqa: E402
from qmp import (TIMEOUT, Qmp, QmpError, check, failed, passed,  # noqa: E402
                 skipped, start, wait_exit)

BUILD = os.environ.get('BUILD', 'build')
SD = os.path.join(BUILD, "spindle-sd")
VM = os.path.join(BUILD, 'spindle-vm')
BLKBENCH = os.path.join(BUILD, 'guest', 'blkbench.elf')
QSD = shutil.which('qemu-storage-daemon')
daemon_pids = []          # spindle-sd --daemonize children, from their pidfile


def make_image(path, size):
    with open(path, 'wb') as f:
        f.truncate(size)


def err_of(reply):
    """(class, desc) of an error reply, or the reply itself when it is not one."""
    if reply and 'error' in reply:
        return (reply['error']['class'], reply['error']['desc'])
    return reply


def diff(a, b, path=''):
    """The first difference between two JSON values, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                return f'{path}.{k}: only in QEMU ({b[k]!r})'
            if k not in b:
                return f'{path}.{k}: only in spindle ({a[k]!r})'
            d = diff(a[k], b[k], f'{path}.{k}')
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f'{path}: {len(a)} items, QEMU {len(b)}'
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, f'{path}[{i}]')
            if d:
                return d
        return None
    if a != b or type(a) is not type(b):
        return f'{path}: {a!r}, QEMU {b!r}'
    return None


def normalise(v, directory):
    """v with the test directory's name taken out of every string."""
    if isinstance(v, dict):
        return {k: normalise(x, directory) for k, x in v.items()}
    if isinstance(v, list):
        return [normalise(x, directory) for x in v]
    if isinstance(v, str):
        return v.replace(directory, '<dir>')
    return v


def by_node(replies):
    return {n.get('node-name'): n for n in replies}


class Side:
    """A storage daemon (spindle-sd or qemu-storage-daemon) in its own directory."""

    def __init__(self, binary, top, name):
        self.dir = os.path.join(top, name)
        os.mkdir(self.dir)
        self.sock = os.path.join(self.dir, 'qmp.sock')
        self.img = os.path.join(self.dir, 'disk.raw')
        make_image(self.img, 1 << 20)
        self.proc = start([binary, '--chardev',
                           f'socket,id=mon0,path={self.sock},server=on,wait=off',
                           '--monitor', 'chardev=mon0'])
        self.qmp = Qmp(self.sock)

    def cmd(self, name, args=None):
        return normalise(self.qmp.cmd(name, args), self.dir)

    def add_nodes(self):
        r1 = self.qmp.cmd('blockdev-add', {'driver': 'file', 'node-name': 'f0',
                                           'filename': self.img})
        r2 = self.qmp.cmd('blockdev-add', {'driver': 'raw', 'node-name': 'r0', 'file': 'f0'})
        return r1, r2


# ---- The protocol --------------------------------------------------------------------

def protocol_checks(sd, qsd, top):
    g = sd.qmp.greeting
    v = g.get('QMP', {}).get('version', {})
    ok = (set(g) == {'QMP'} and set(g['QMP']) == {'version', 'capabilities'} and
          set(v) == {'qemu', 'package'} and set(v['qemu']) == {'major', 'minor', 'micro'} and
          all(isinstance(x, int) for x in v['qemu'].values()) and
          isinstance(v['package'], str) and v['package'].startswith('spindle') and
          isinstance(g['QMP']['capabilities'], list))
    check('greeting_shape', ok, json.dumps(g))
    if qsd:
        q = qsd.qmp.greeting
        check('greeting_keys_as_qemu',
              set(q) == set(g) and set(q['QMP']) == set(g['QMP']) and
              set(q['QMP']['version']) == set(v) and
              set(q['QMP']['version']['qemu']) == set(v['qemu']), json.dumps(q))

    mode = stat.S_IMODE(os.stat(sd.sock).st_mode)
    check('socket_mode_0600', stat.S_ISSOCK(os.stat(sd.sock).st_mode) and mode == 0o600,
          oct(mode))

    # Before qmp_capabilities: only it runs, and no events arrive.
    fresh = Qmp(sd.sock, negotiate=False)
    r = fresh.cmd('query-version', id=1)
    check('before_capabilities_refused',
          err_of(r) == ('CommandNotFound',
                        "Expecting capabilities negotiation with 'qmp_capabilities'") and
          r.get('id') == 1, json.dumps(r))
    if qsd:
        # QEMU's socket chardev serves one client at a time: take turns.
        qsd.qmp.close()
        fq = Qmp(qsd.sock, negotiate=False)
        check('before_capabilities_as_qemu',
              err_of(fq.cmd('query-version')) == err_of(fresh.cmd('query-version')))
        fq.close()
        qsd.qmp = Qmp(qsd.sock)
    r = fresh.cmd('qmp_capabilities')
    r2 = fresh.cmd('qmp_capabilities')
    check('capabilities_once', r == {'return': {}} and
          err_of(r2) == ('CommandNotFound',
                         'Capabilities negotiation is already complete, command ignored'),
          f'{r} {r2}')
    fresh.close()

    r = sd.qmp.cmd('query-version')
    ok = isinstance(r.get('return'), dict) and r['return'] == v
    if qsd:
        q = qsd.qmp.cmd('query-version')
        ok = ok and set(q['return']) == set(r['return'])
    check('query_version', ok, json.dumps(r))

    r = sd.qmp.cmd('query-commands')
    names = {c.get('name') for c in r.get('return', [])}
    want = {'qmp_capabilities', 'query-version', 'query-commands', 'query-status', 'stop',
            'cont', 'quit', 'query-block', 'query-named-block-nodes', 'query-blockstats',
            'blockdev-add', 'blockdev-del', 'blockdev-create', 'block_resize',
            'block-dirty-bitmap-add', 'block-dirty-bitmap-remove', 'block-dirty-bitmap-clear',
            'block-dirty-bitmap-enable', 'block-dirty-bitmap-disable',
            'block-dirty-bitmap-merge', 'query-iothreads'}
    check('query_commands', want <= names and
          all(set(c) == {'name'} for c in r['return']), f'missing {want - names}')

    r = sd.qmp.cmd('query-status')
    check('query_status', r.get('return') == {'status': 'running', 'singlestep': False,
                                              'running': True}, json.dumps(r))

    r = sd.qmp.cmd('query-iothreads')
    check('query_iothreads_empty', r == {'return': []}, json.dumps(r))

    # Errors: the same class and words as QEMU, and the connection goes on.
    bad = [
        ('unknown_command', '{"execute": "nope", "id": "x"}'),
        ('non_object', '[1, 2]'),
        ('string', '"query-version"'),
        ('lacks_execute', '{"id": 3}'),
        ('execute_not_string', '{"execute": 5}'),
        ('arguments_not_object', '{"execute": "query-version", "arguments": []}'),
        ('unexpected_member', '{"execute": "query-version", "foo": 1}'),
        ('exec_oob_refused', '{"exec-oob": "query-version"}'),
        ('missing_argument', '{"execute": "block_resize", "arguments": {"node-name": "n"}}'),
        ('mistyped_argument',
         '{"execute": "block_resize", "arguments": {"node-name": "n", "size": "1M"}}'),
        ('unexpected_argument', '{"execute": "query-version", "arguments": {"x": 1}}'),
        ('nested_missing', '{"execute": "block-dirty-bitmap-merge", "arguments": '
                           '{"node": "n", "target": "t", "bitmaps": [{"node": "n"}]}}'),
        ('nested_mistyped', '{"execute": "blockdev-add", "arguments": {"driver": "file", '
                            '"node-name": "x", "filename": "/x", "cache": {"direct": 1}}}'),
        ('enum_value', '{"execute": "blockdev-add", "arguments": {"driver": "file", '
                       '"node-name": "x", "filename": "/x", "aio": "bogus"}}'),
        ('uint32_range', '{"execute": "block-dirty-bitmap-add", "arguments": '
                         '{"node": "n", "name": "b", "granularity": -1}}'),
        ('bool_mistyped', '{"execute": "blockdev-add", "arguments": {"driver": "file", '
                          '"node-name": "x", "filename": "/x", "read-only": "on"}}'),
        ('unknown_driver', '{"execute": "blockdev-add", "arguments": {"driver": "nosuch", '
                           '"node-name": "x"}}'),
        ('no_root_node_name', '{"execute": "blockdev-add", "arguments": {"driver": "file", '
                              '"filename": "/x"}}'),
        ('node_not_found', '{"execute": "block_resize", "arguments": '
                           '{"node-name": "zz", "size": 1}}'),
        ('device_nor_node', '{"execute": "block_resize", "arguments": {"size": 1}}'),
        ('del_not_found', '{"execute": "blockdev-del", "arguments": {"node-name": "zz"}}'),
        ('create_missing', '{"execute": "blockdev-create", "arguments": '
                           '{"job-id": "j", "options": {}}}'),
        ('single_quotes', "{'execute': 'query-status-nope'}"),
    ]
    for name, text in bad:
        sd.qmp.send(text + '\n')
        r = sd.qmp.reply()
        if qsd:
            qsd.qmp.send(text + '\n')
            q = qsd.qmp.reply()
            check(f'error_as_qemu/{name}', err_of(r) == err_of(q) and r.get('id') == q.get('id'),
                  f'spindle {json.dumps(r)}, QEMU {json.dumps(q)}')
        else:
            check(f'error_reply/{name}', 'error' in (r or {}), json.dumps(r))

    sd.qmp.send('{"execute": }\n')
    r = sd.qmp.reply()
    r2 = sd.qmp.cmd('query-status')
    check('bad_json_then_usable', err_of(r)[0] == 'GenericError' and
          err_of(r)[1].startswith('JSON parse error') and 'return' in r2, f'{r} {r2}')
    # A control character is the client's way to reset a half-sent request.
    sd.qmp.send('{"execute": "query-sta\x1b')
    r = sd.qmp.reply()
    r2 = sd.qmp.cmd('query-status')
    check('control_char_resets', 'error' in r and 'return' in r2, f'{r} {r2}')

    r = sd.qmp.cmd('query-status', id={'a': [1, None, 'x']})
    check('id_echoed', r.get('id') == {'a': [1, None, 'x']}, json.dumps(r))

    sd.qmp.send('{"execute": "query-status", "id": 1}{"execute": "query-version", '
                '"id": 2}\n{"execute":')
    time.sleep(0.05)
    sd.qmp.send(' "query-status", "id"')
    time.sleep(0.05)
    sd.qmp.send(': 3}')
    ids = [sd.qmp.reply().get('id') for _ in range(3)]
    check('split_and_concatenated', ids == [1, 2, 3], str(ids))

    clients_checks(sd)
    leaving_checks(sd, top)


def clients_checks(sd):
    a, b, c = Qmp(sd.sock), Qmp(sd.sock), Qmp(sd.sock, negotiate=False)
    # Interleaved: each gets its own replies, in its own order.
    a.send('{"execute": "query-status", "id": "a1"}\n')
    b.send('{"execute": "query-version", "id": "b1"}\n')
    c.send('{"execute": "query-status", "id": "c1"}\n')
    a.send('{"execute": "query-commands", "id": "a2"}\n')
    ra1, rb1, rc1, ra2 = a.reply(), b.reply(), c.reply(), a.reply()
    ok = (ra1.get('id') == 'a1' and 'return' in ra1 and rb1.get('id') == 'b1' and
          'qemu' in rb1.get('return', {}) and rc1.get('id') == 'c1' and
          err_of(rc1)[0] == 'CommandNotFound' and ra2.get('id') == 'a2')
    check('several_clients', ok, f'{ra1} {rb1} {rc1} {str(ra2)[:80]}')
    # stop/cont events reach negotiated clients only.
    a.cmd('stop')
    a.cmd('cont')
    got_b = b.wait_event('STOP', 5) is not None and b.wait_event('RESUME', 5) is not None
    c.send('{"execute": "qmp_capabilities"}\n')
    rc = c.reply()
    check('events_only_after_negotiation',
          got_b and rc == {'return': {}} and not c.events, f'{got_b} {rc} {c.events}')
    for q in (a, b, c):
        q.close()


def leaving_checks(sd, top):
    # A client that sends a command and leaves before the reply: blockdev-create of a
    # fully preallocated file takes a moment.
    target = os.path.join(sd.dir, 'leaver.raw')
    q = Qmp(sd.sock)
    q.send(json.dumps({'execute': 'blockdev-create', 'arguments': {
        'job-id': 'leave', 'options': {'driver': 'file', 'filename': target,
                                       'size': 64 << 20, 'preallocation': 'full'}}}) + '\n')
    # Leave once the command has begun (a client gone before its request ran loses it).
    deadline = time.time() + 5
    while not os.path.exists(target) and time.time() < deadline:
        time.sleep(0.001)
    q.close()
    # Half a request, then gone.
    q = Qmp(sd.sock)
    q.send('{"execute": "query-st')
    q.close()
    q = Qmp(sd.sock)
    r = q.cmd('query-status')
    check('client_leaves_mid_command', 'return' in r and sd.proc.poll() is None and
          os.path.exists(target), json.dumps(r))
    q.close()

    # A client that sends a lot without ever finishing a value is cut off.
    q = Qmp(sd.sock)
    other = Qmp(sd.sock)
    chunk = b'[' + b' ' * (256 << 10)
    cut = False
    try:
        for _ in range(64):
            q.send(chunk)
    except OSError:
        cut = True
    # The server sends an error and hangs up; a reset may overtake the error.
    r = None
    try:
        r = q.reply(5)
    except OSError:
        cut = True
    gone = cut or q.closed(5)
    r2 = other.cmd('query-status')
    check('endless_input_disconnected', gone and (r is None or 'error' in r) and
          'return' in r2 and sd.proc.poll() is None, f'{r} gone={gone} {r2}')
    q.close()
    other.close()


# ---- Block commands, side by side with qemu-storage-daemon ---------------------------

def block_checks(sd, qsd):
    r1, r2 = sd.add_nodes()
    check('blockdev_add_file_raw', r1 == {'return': {}} and r2 == {'return': {}}, f'{r1} {r2}')
    if qsd:
        q1, q2 = qsd.add_nodes()
        if q1 != {'return': {}} or q2 != {'return': {}}:
            failed('qemu_blockdev_add', f'{q1} {q2}')
            qsd = None

    def compare(name, cmd, args=None, key=None):
        mine = sd.cmd(cmd, args)
        if not qsd:
            check(f'{name}_shape', 'return' in mine, json.dumps(mine))
            return mine
        theirs = qsd.cmd(cmd, args)
        a, b = mine.get('return'), theirs.get('return')
        if key:
            a, b = key(a), key(b)
        d = diff(a, b)
        check(f'{name}_as_qemu', d is None, d)
        return mine

    def nodes_without_driver_specific(lst):
        def strip(e):
            e = {k: v for k, v in e.items() if k != 'driver-specific'}
            if 'parent' in e:
                e['parent'] = strip(e['parent'])
            return e
        return by_node([strip(e) for e in lst])

    compare('query_named_block_nodes', 'query-named-block-nodes', key=by_node)
    compare('query_named_block_nodes_flat', 'query-named-block-nodes', {'flat': True},
            key=by_node)
    compare('query_block', 'query-block')
    compare('query_blockstats', 'query-blockstats')
    compare('query_blockstats_nodes', 'query-blockstats', {'query-nodes': True},
            key=nodes_without_driver_specific)

    def both(cmd, args=None):
        mine = sd.cmd(cmd, args)
        theirs = qsd.cmd(cmd, args) if qsd else None
        return mine, theirs

    def same_reply(name, cmd, args=None, want=None):
        mine, theirs = both(cmd, args)
        if theirs is not None:
            check(name, err_of(mine) == err_of(theirs), f'spindle {mine}, QEMU {theirs}')
        else:
            check(name, want is None or mine == want, json.dumps(mine))
        return mine

    same_reply('blockdev_add_duplicate', 'blockdev-add',
               {'driver': 'file', 'node-name': 'f0', 'filename': sd.img})
    same_reply('blockdev_del_in_use', 'blockdev-del', {'node-name': 'f0'})

    # block_resize through the format node reaches the file.
    same_reply('block_resize', 'block_resize', {'node-name': 'r0', 'size': 2 << 20},
               {'return': {}})
    same_reply('block_resize_negative', 'block_resize', {'node-name': 'r0', 'size': -5})
    nodes = by_node(sd.cmd('query-named-block-nodes')['return'])
    check('block_resize_size', nodes['r0']['image']['virtual-size'] == 2 << 20 and
          nodes['f0']['image']['virtual-size'] == 2 << 20 and
          os.path.getsize(sd.img) == 2 << 20, str(os.path.getsize(sd.img)))

    # Dirty bitmaps.
    same_reply('bitmap_add', 'block-dirty-bitmap-add', {'node': 'r0', 'name': 'b0'},
               {'return': {}})
    same_reply('bitmap_add_disabled', 'block-dirty-bitmap-add',
               {'node': 'r0', 'name': 'b1', 'granularity': 4096, 'disabled': True},
               {'return': {}})
    same_reply('bitmap_add_duplicate', 'block-dirty-bitmap-add', {'node': 'r0', 'name': 'b0'})
    same_reply('bitmap_add_granularity', 'block-dirty-bitmap-add',
               {'node': 'r0', 'name': 'b2', 'granularity': 1000})
    same_reply('bitmap_add_no_node', 'block-dirty-bitmap-add', {'node': 'zz', 'name': 'b2'})
    same_reply('bitmap_add_persistent_raw', 'block-dirty-bitmap-add',
               {'node': 'r0', 'name': 'b3', 'persistent': True})
    compare('bitmaps_listed', 'query-named-block-nodes', key=by_node)
    same_reply('bitmap_merge', 'block-dirty-bitmap-merge',
               {'node': 'r0', 'target': 'b0', 'bitmaps': ['b1', {'node': 'r0', 'name': 'b1'}]},
               {'return': {}})
    same_reply('bitmap_merge_missing', 'block-dirty-bitmap-merge',
               {'node': 'r0', 'target': 'b0', 'bitmaps': ['nope']})
    same_reply('bitmap_disable', 'block-dirty-bitmap-disable', {'node': 'r0', 'name': 'b0'},
               {'return': {}})
    same_reply('bitmap_enable', 'block-dirty-bitmap-enable', {'node': 'r0', 'name': 'b1'},
               {'return': {}})
    same_reply('bitmap_clear', 'block-dirty-bitmap-clear', {'node': 'r0', 'name': 'b0'},
               {'return': {}})
    compare('bitmaps_after_changes', 'query-named-block-nodes', key=by_node)
    same_reply('bitmap_remove', 'block-dirty-bitmap-remove', {'node': 'r0', 'name': 'b0'},
               {'return': {}})
    same_reply('bitmap_remove_missing', 'block-dirty-bitmap-remove',
               {'node': 'r0', 'name': 'b0'})
    compare('bitmaps_after_remove', 'query-named-block-nodes', key=by_node)

    # blockdev-del: the format node, then its file.
    same_reply('blockdev_del', 'blockdev-del', {'node-name': 'r0'}, {'return': {}})
    same_reply('blockdev_del_again', 'blockdev-del', {'node-name': 'r0'})
    same_reply('blockdev_del_file', 'blockdev-del', {'node-name': 'f0'}, {'return': {}})
    r = sd.cmd('query-named-block-nodes')
    check('blockdev_del_gone', r == {'return': []}, json.dumps(r))

    # blockdev-create: file (and raw, spindle's addition); qcow2 when the driver exists.
    target = os.path.join(sd.dir, 'new.raw')
    r = sd.cmd('blockdev-create', {'job-id': 'c0', 'options': {
        'driver': 'file', 'filename': target, 'size': 3 << 20}})
    check('blockdev_create_file', r == {'return': {}} and os.path.getsize(target) == 3 << 20,
          json.dumps(r))
    r1 = sd.cmd('blockdev-add', {'driver': 'file', 'node-name': 'nf', 'filename': target})
    r2 = sd.cmd('blockdev-create', {'job-id': 'c1', 'options': {
        'driver': 'raw', 'file': 'nf', 'size': 5 << 20}})
    check('blockdev_create_raw', r1 == {'return': {}} and r2 == {'return': {}} and
          os.path.getsize(target) == 5 << 20, f'{r1} {r2}')
    r = sd.cmd('blockdev-create', {'job-id': '9bad', 'options': {
        'driver': 'file', 'filename': target, 'size': 1}})
    check('blockdev_create_bad_job_id', err_of(r) == ('GenericError', "Invalid job ID '9bad'"),
          json.dumps(r))
    r = sd.cmd('blockdev-create', {'job-id': 'c2', 'options': {
        'driver': 'null-co', 'size': 1}})
    check('blockdev_create_unsupported',
          err_of(r) == ('GenericError', 'Driver does not support blockdev-create'), json.dumps(r))
    sd.cmd('blockdev-del', {'node-name': 'nf'})
    r = sd.cmd('blockdev-add', {'driver': 'qcow2', 'node-name': 'x', 'file': 'none'})
    if err_of(r) == ('GenericError', "Parameter 'driver' does not accept value 'qcow2'"):
        skipped('qcow2', 'no qcow2 driver in this build')
    else:
        qcow2_checks(sd, qsd)


def qemu_create(side, job, options):
    """blockdev-create on qemu-storage-daemon: a job, waited for and dismissed."""
    r = side.qmp.cmd('blockdev-create', {'job-id': job, 'options': options})
    if r != {'return': {}}:
        return r
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        ev = side.qmp.wait_event('JOB_STATUS_CHANGE', 1)
        if ev and ev['data'] == {'id': job, 'status': 'concluded'}:
            break
    jobs = side.qmp.cmd('query-jobs')['return']
    side.qmp.cmd('job-dismiss', {'id': job})
    err = [j.get('error') for j in jobs if j['id'] == job and j.get('error')]
    return {'error': {'class': 'GenericError', 'desc': err[0]}} if err else {'return': {}}


def img_info(path):
    out = subprocess.run(['qemu-img', 'info', '-U', '--output=json', path],
                         capture_output=True, text=True).stdout
    try:
        info = json.loads(out)
    except ValueError:
        return {}
    for k in ('filename', 'actual-size', 'dirty-flag'):
        info.pop(k, None)
    return info


def qcow2_checks(sd, qsd):
    """blockdev-create of qcow2 on a protocol node, the QMP way, against QEMU's job."""
    sides = [sd] + ([qsd] if qsd else [])
    results = []
    for side in sides:
        path = os.path.join(side.dir, 'new.qcow2')
        steps = [side.qmp.cmd('blockdev-create', {'job-id': 'c3', 'options': {
                     'driver': 'file', 'filename': path, 'size': 0}})
                 if side is sd else qemu_create(side, 'c3', {
                     'driver': 'file', 'filename': path, 'size': 0})]
        steps.append(side.qmp.cmd('blockdev-add', {'driver': 'file', 'node-name': 'qf',
                                                   'filename': path}))
        opts = {'driver': 'qcow2', 'file': 'qf', 'size': 8 << 20, 'cluster-size': 32768,
                'lazy-refcounts': True}
        steps.append(side.qmp.cmd('blockdev-create', {'job-id': 'c4', 'options': opts})
                     if side is sd else qemu_create(side, 'c4', opts))
        steps.append(side.qmp.cmd('blockdev-add', {'driver': 'qcow2', 'node-name': 'q0',
                                                   'file': 'qf'}))
        results.append((side, path, steps))
    sd_path, sd_steps = results[0][1], results[0][2]
    ok = all(x == {'return': {}} for x in sd_steps)
    info = img_info(sd_path)
    check('blockdev_create_qcow2', ok and info.get('format') == 'qcow2' and
          info.get('cluster-size') == 32768 and info.get('virtual-size') == 8 << 20,
          f'{sd_steps} {info}')
    chk = subprocess.run(['qemu-img', 'check', '-U', sd_path], capture_output=True, text=True)
    check('blockdev_create_qcow2_check', chk.returncode == 0, chk.stdout + chk.stderr)
    if qsd:
        q_ok = all(x == {'return': {}} for x in results[1][2])
        d = diff(img_info(sd_path), img_info(results[1][1]))
        check('blockdev_create_qcow2_as_qemu', q_ok and d is None, f'{results[1][2]} {d}')
        a = by_node(sd.cmd('query-named-block-nodes')['return'])
        b = by_node(qsd.cmd('query-named-block-nodes')['return'])
        dd = diff(a.get('q0'), b.get('q0'))
        check('query_named_block_nodes_qcow2_as_qemu', dd is None, dd)
    # A persistent bitmap is kept by the qcow2 image (QEMU writes it when the node closes).
    r = sd.cmd('block-dirty-bitmap-add', {'node': 'q0', 'name': 'pb', 'persistent': True})
    bm = by_node(sd.cmd('query-named-block-nodes')['return'])['q0'].get('dirty-bitmaps', [])
    r2 = sd.cmd('blockdev-del', {'node-name': 'q0'})
    info = img_info(sd_path)
    stored = [b.get('name') for b in
              info.get('format-specific', {}).get('data', {}).get('bitmaps', [])]
    check('bitmap_persistent_qcow2', r == {'return': {}} and r2 == {'return': {}} and
          bm and bm[0].get('persistent') is True and stored == ['pb'], f'{r} {bm} {r2} {stored}')
    sd.cmd('blockdev-del', {'node-name': 'qf'})
    if qsd:
        qsd.cmd('blockdev-del', {'node-name': 'q0'})
        qsd.cmd('blockdev-del', {'node-name': 'qf'})


# ---- The run state and the program's life ------------------------------------------

def runstate_checks(sd):
    sd.qmp.events.clear()       # the other clients' stop and cont were heard here too
    before = time.time()
    r = sd.qmp.cmd('stop')
    after = time.time()
    ev = sd.qmp.wait_event('STOP', 5)
    st = sd.qmp.cmd('query-status')
    ok = r == {'return': {}} and ev is not None and set(ev) == {'event', 'timestamp'}
    if ok:
        ts = ev['timestamp']['seconds'] + ev['timestamp']['microseconds'] / 1e6
        ok = before - 0.01 <= ts <= after + 0.01 and 0 <= ev['timestamp']['microseconds'] < 10**6
    check('sd_stop_event', ok and st['return']['status'] == 'paused', f'{r} {ev} {st}')
    r = sd.qmp.cmd('stop')
    check('sd_stop_again_no_event', r == {'return': {}} and
          sd.qmp.wait_event('STOP', 0.3) is None)
    r = sd.qmp.cmd('cont')
    ev = sd.qmp.wait_event('RESUME', 5)
    check('sd_cont_event', r == {'return': {}} and ev is not None and
          sd.qmp.cmd('query-status')['return']['status'] == 'running', f'{r} {ev}')


def lifetime_checks(top):
    # quit: SHUTDOWN, the reply, EOF, exit 0, the socket gone, the data on disk.
    sd = Side(SD, top, 'life')
    sd.add_nodes()
    data = os.urandom(4096)
    with open(sd.img, 'r+b') as f:
        f.write(data)
    r = sd.qmp.cmd('quit')
    ev = sd.qmp.wait_event('SHUTDOWN', 5)
    eof = sd.qmp.at_eof(5)
    rc = wait_exit(sd.proc)
    with open(sd.img, 'rb') as f:
        same = f.read(4096) == data
    check('sd_quit', r == {'return': {}} and ev is not None and
          ev.get('data') == {'guest': False, 'reason': 'host-qmp-quit'} and eof and rc == 0 and
          not os.path.exists(sd.sock) and same,
          f'{r} {ev} eof={eof} rc={rc} {sd.proc.stderr.read()[:300]}')

    # SIGTERM: SHUTDOWN with host-signal, exit 0.
    sd = Side(SD, top, 'term')
    sd.proc.send_signal(signal.SIGTERM)
    ev = sd.qmp.wait_event('SHUTDOWN', 5)
    rc = wait_exit(sd.proc)
    check('sd_sigterm', ev is not None and ev.get('data', {}).get('reason') == 'host-signal' and
          rc == 0, f'{ev} rc={rc}')

    # --blockdev in both forms (key=val, JSON), in order, and iothreads; --help, --version.
    d = os.path.join(top, 'opts')
    os.mkdir(d)
    img, sock = os.path.join(d, 'disk.raw'), os.path.join(d, 'qmp.sock')
    make_image(img, 1 << 20)
    p = start([SD, '--object', 'iothread,id=io0,poll-max-ns=1000',
               '--blockdev', f'driver=file,node-name=f0,filename={img},read-only=on',
               '--blockdev', '{"driver": "raw", "node-name": "r0", "file": "f0", '
                             '"read-only": true}',
               '--chardev', f'socket,id=m,path={sock},server=on,wait=off', '--monitor', 'm'])
    q = Qmp(sock)
    nodes = by_node(q.cmd('query-named-block-nodes')['return'])
    threads = q.cmd('query-iothreads')['return']
    check('sd_blockdev_options', set(nodes) == {'f0', 'r0'} and nodes['r0']['ro'] and
          nodes['f0']['ro'] and nodes['r0']['image']['virtual-size'] == 1 << 20 and
          len(threads) == 1 and threads[0]['poll-max-ns'] == 1000 and
          threads[0]['thread-id'] > 0, f'{sorted(nodes)} {threads}')
    q.cmd('quit')
    q.close()
    wait_exit(p)
    for opt, want in (('--help', 'usage: spindle-sd'), ('--version', 'spindle-sd')):
        p = start([SD, opt])
        rc = wait_exit(p)
        out = p.stdout.read().decode()
        check(f'sd{opt.replace("-", "_")}', rc == 0 and out.startswith(want), f'rc={rc} {out}')

    # --export is refused for now, with a sentence.
    p = start([SD, '--export', 'type=nbd,id=e0,node-name=n0'])
    rc = wait_exit(p)
    err = p.stderr.read().decode()
    check('sd_export_not_supported', rc == 1 and 'not supported yet' in err, f'rc={rc} {err}')

    # Bad options: one sentence, exit 1.
    for name, argv, want in [
            ('chardev_wait', ['--chardev', 'socket,id=c,path=/tmp/x,server=on'], 'wait=off'),
            ('monitor_unknown_chardev', ['--monitor', 'chardev=zz'], "chardev 'zz' not found"),
            ('blockdev_bad', ['--blockdev', 'driver=file,node-name=f,filename=/nonexistent/x'],
             '--blockdev: '),
            ('object_type', ['--object', 'secret,id=s'], 'only iothread')]:
        p = start([SD] + argv)
        rc = wait_exit(p)
        err = p.stderr.read().decode()
        check(f'sd_refuses/{name}', rc == 1 and want in err and err.count('\n') == 1,
              f'rc={rc} {err}')

    # --daemonize and --pidfile: the parent returns once the daemon is up.
    d = os.path.join(top, 'daemon')
    os.mkdir(d)
    sock, pidfile = os.path.join(d, 'qmp.sock'), os.path.join(d, 'sd.pid')
    p = start([SD, '--daemonize', '--pidfile', pidfile, '--object', 'iothread,id=io0',
               '--chardev', f'socket,id=m,path={sock},server,nowait', '--monitor', 'm'])
    rc = wait_exit(p)
    pid = None
    try:
        with open(pidfile) as f:
            pid = int(f.read())
        daemon_pids.append(pid)
    except (OSError, ValueError):
        pass
    ok = rc == 0 and pid is not None and os.path.exists(sock)
    if ok:
        q = Qmp(sock)
        threads = q.cmd('query-iothreads').get('return', [])
        ok = len(threads) == 1 and threads[0]['id'] == 'io0'
        q.cmd('quit')
        q.at_eof(5)
        q.close()
        for _ in range(100):
            if not os.path.exists(f'/proc/{pid}'):
                break
            time.sleep(0.05)
        ok = ok and not os.path.exists(f'/proc/{pid}') and not os.path.exists(pidfile)
    check('sd_daemonize_pidfile', ok, f'rc={rc} pid={pid}')


def vcpu_threads(pid, want=None):
    """How many threads of pid are vCPUs (named vcpuN); with want, wait up to 2 s for it."""
    deadline = time.time() + 2
    while True:
        n = 0
        try:
            for t in os.listdir(f'/proc/{pid}/task'):
                with open(f'/proc/{pid}/task/{t}/comm') as f:
                    n += f.read().startswith('vcpu')
        except OSError:
            pass
        if want is None or n == want or time.time() > deadline:
            return n
        time.sleep(0.02)


def VM_DISK(d):
    """The disk both VMs get: a raw -drive on virtio-blk-pci."""
    return ['-drive', f'if=none,id=d0,file={d}/disk.raw,format=raw',
            '-device', 'virtio-blk-pci,drive=d0,id=vd0']


def stats_keys(v):
    """query-blockstats with every statistic's value taken out (the guest ran on one)."""
    if isinstance(v, dict):
        return {k: (sorted(x) if k == 'stats' else stats_keys(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [stats_keys(x) for x in v]
    return v


def auto_names(v):
    """v with the automatic node names (#blockNNN) made equal."""
    if isinstance(v, dict):
        return {k: auto_names(x) for k, x in v.items()}
    if isinstance(v, list):
        return [auto_names(x) for x in v]
    if isinstance(v, str) and v.startswith('#block'):
        return '#block'
    return v


def vm_query_block(q, d, top):
    """query-block and query-blockstats of a -drive, against qemu-system-x86_64's."""
    mine = q.cmd('query-block')
    if 'return' not in mine:
        failed('vm_query_block', json.dumps(mine))
        return
    if not mine['return']:
        skipped('vm_query_block_as_qemu', 'spindle-vm does not open -drive backends yet')
        return
    qemu = shutil.which('qemu-system-x86_64')
    if not qemu:
        skipped('vm_query_block_as_qemu', 'qemu-system-x86_64 is not installed')
        return
    qd = os.path.join(top, 'qemu-vm')
    os.mkdir(qd)
    make_image(os.path.join(qd, 'disk.raw'), 16 << 20)
    sock = os.path.join(qd, 'qmp.sock')
    # Paused before its firmware runs: only the devices and drives matter here.
    start([qemu, '-S', '-nodefaults', '-display', 'none', '-qmp',
           f'unix:{sock},server=on,wait=off'] + VM_DISK(qd))
    qq = Qmp(sock)
    for cmd in ('query-block', 'query-blockstats'):
        a = auto_names(normalise(q.cmd(cmd)['return'], d))
        b = auto_names(normalise(qq.cmd(cmd)['return'], qd))
        if cmd == 'query-blockstats':
            for e in a + b:
                e.pop('driver-specific', None)
                e.get('parent', {}).pop('driver-specific', None)
                # Histograms and the idle time come with use; the guest used ours.
                for k in ('idle_time_ns', 'rd_latency_histogram', 'wr_latency_histogram',
                          'flush_latency_histogram'):
                    e['stats'].pop(k, None)
            a, b = stats_keys(a), stats_keys(b)
        dd = diff(a, b)
        check(f'vm_{cmd.replace("-", "_")}_as_qemu', dd is None, dd)
    qq.cmd('quit')
    qq.close()


def guest_reads(q):
    """The reads the guest has done on d0 (query-blockstats)."""
    for e in q.cmd('query-blockstats').get('return', []):
        if e.get('device') == 'd0':
            return e['stats']['rd_operations']
    return -1


def vm_io_error(top):
    """werror=enospc: a write fails with ENOSPC, BLOCK_IO_ERROR then STOP, cont retries it."""
    d = os.path.join(top, 'vm-io-error')
    os.mkdir(d)
    make_image(os.path.join(d, 'disk.raw'), 16 << 20)
    sock = os.path.join(d, 'qmp.sock')
    vm = start([VM, '-enable-kvm', '-cpu', 'host', '-m', '128', '-nographic', '-no-reboot',
                '-S', '-kernel', BLKBENCH, '-append', 'rw=randwrite bs=4k runtime=600',
                '-drive', f'if=none,id=d0,file=blkdebug::{d}/disk.raw,format=raw,werror=enospc,'
                'file.inject-error.0.event=pwritev,file.inject-error.0.errno=28,'
                'file.inject-error.0.once=on',
                '-device', 'virtio-blk-pci,drive=d0,id=vd0', '-serial', 'none',
                '-qmp', f'unix:{sock},server=on,wait=off'])
    q = Qmp(sock)
    q.cmd('cont')
    q.wait_event('RESUME', 5)
    err = q.wait_event('BLOCK_IO_ERROR', 20)
    stop = q.wait_event('STOP', 5)
    order = [e['event'] for e in q.events]
    st = q.cmd('query-status').get('return', {})
    blk = q.cmd('query-block').get('return', [{}])[0]
    data = (err or {}).get('data', {})
    check('vm_block_io_error_event',
          err is not None and data.get('device') == 'd0' and data.get('operation') == 'write' and
          data.get('action') == 'stop' and data.get('nospace') is True and
          data.get('reason') == 'No space left on device' and
          data.get('node-name', '').startswith('#block'), json.dumps(err))
    ts = lambda e: e['timestamp']['seconds'] * 10**6 + e['timestamp']['microseconds']
    check('vm_io_error_stops', stop is not None and err is not None and ts(err) <= ts(stop) and
          'RESUME' not in order and st.get('status') == 'io-error' and
          blk.get('io-status') == 'nospace', f'{stop} {st} {blk.get("io-status")}')
    before = q.cmd('query-blockstats')['return'][0]['stats']['wr_operations']
    r = q.cmd('cont')
    ev = q.wait_event('RESUME', 5)
    time.sleep(0.5)
    after = q.cmd('query-blockstats')['return'][0]['stats']
    blk = q.cmd('query-block').get('return', [{}])[0]
    check('vm_io_error_cont_retries', r == {'return': {}} and ev is not None and
          after['wr_operations'] > before and after['failed_wr_operations'] == 1 and
          blk.get('io-status') == 'ok' and q.cmd('query-status')['return']['running'],
          f'{r} {ev} {before} {after["wr_operations"]} {blk.get("io-status")}')
    q.cmd('quit')
    q.at_eof(5)
    check('vm_io_error_quit', wait_exit(vm) == 0)
    q.close()


def vm_checks(top):
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        skipped('vm', 'no usable /dev/kvm')
        return
    for f in (VM, BLKBENCH):
        if not os.path.exists(f):
            failed('vm', f'{f} missing (run make build-all first)')
            return
    d = os.path.join(top, 'vm')
    os.mkdir(d)
    sock = os.path.join(d, 'qmp.sock')
    serial = os.path.join(d, 'serial.log')
    make_image(os.path.join(d, 'disk.raw'), 16 << 20)
    vm = start([VM, '-enable-kvm', '-cpu', 'host', '-m', '128', '-smp', '2', '-nographic',
                '-no-reboot', '-S', '-kernel', BLKBENCH, '-append',
                'rw=randread bs=4k iodepth=4 runtime=600'] + VM_DISK(d) +
               ['-serial', f'file:{serial}', '-qmp', f'unix:{sock},server=on,wait=off'])
    try:
        q = Qmp(sock)
    except (OSError, QmpError) as e:
        failed('vm_qmp', f'{e}: {vm.stderr.read(2000) if vm.poll() is not None else ""}')
        return
    st = q.cmd('query-status').get('return', {})
    check('vm_prelaunch', st.get('status') == 'prelaunch' and not st.get('running') and
          vcpu_threads(vm.pid, 0) == 0, f'{st} vcpus={vcpu_threads(vm.pid)}')
    r = q.cmd('cont')
    ev = q.wait_event('RESUME', 5)
    check('vm_cont_from_prelaunch', r == {'return': {}} and ev is not None and
          vcpu_threads(vm.pid, 2) == 2 and q.cmd('query-status')['return']['running'],
          f'{r} {ev}')
    # Let the guest get going (blkbench prints its phase line when its job starts).
    deadline = time.time() + 20
    while time.time() < deadline:
        if os.path.exists(serial) and 'PHASE job=0 run start' in open(serial).read():
            break
        time.sleep(0.1)
    before = time.time()
    r = q.cmd('stop')
    after = time.time()
    ev = q.wait_event('STOP', 5)
    st = q.cmd('query-status').get('return', {})
    ok = r == {'return': {}} and ev is not None and 'data' not in ev
    if ok:
        ts = ev['timestamp']['seconds'] + ev['timestamp']['microseconds'] / 1e6
        ok = before - 0.01 <= ts <= after + 0.01
    check('vm_stop', ok and st == {'status': 'paused', 'singlestep': False, 'running': False}
          and vcpu_threads(vm.pid, 0) == 0, f'{r} {ev} {st} vcpus={vcpu_threads(vm.pid)}')
    # Paused means paused: the guest's reads stop, and go on after cont.
    reads = [guest_reads(q)]
    time.sleep(0.5)
    reads.append(guest_reads(q))
    r = q.cmd('stop')
    check('vm_stop_while_paused', r == {'return': {}} and q.wait_event('STOP', 0.3) is None)
    before = time.time()
    r = q.cmd('cont')
    after = time.time()
    ev = q.wait_event('RESUME', 5)
    ok = r == {'return': {}} and ev is not None
    if ok:
        ts = ev['timestamp']['seconds'] + ev['timestamp']['microseconds'] / 1e6
        ok = before - 0.01 <= ts <= after + 0.01
    check('vm_cont', ok and q.cmd('query-status')['return']['status'] == 'running' and
          vcpu_threads(vm.pid, 2) == 2, f'{r} {ev}')
    time.sleep(0.5)
    reads.append(guest_reads(q))
    check('vm_no_io_while_paused', reads[0] > 0 and reads[0] == reads[1] and reads[2] > reads[1],
          f'reads {reads}')
    vm_query_block(q, d, top)
    r = q.cmd('quit')
    ev = q.wait_event('SHUTDOWN', 5)
    eof = q.at_eof(5)
    rc = wait_exit(vm)
    check('vm_quit', r == {'return': {}} and ev is not None and
          ev.get('data') == {'guest': False, 'reason': 'host-qmp-quit'} and eof and rc == 0,
          f'{r} {ev} eof={eof} rc={rc}')
    q.close()
    vm_io_error(top)


def main():
    for f in (SD,):
        if not os.path.exists(f):
            failed('qmp_conformance', f'{f} missing (run make build-all first)')
            return 1
    top = tempfile.mkdtemp(prefix='spindle-qmp-')
    try:
        sd = Side(SD, top, 'sd')
        qsd = None
        if QSD:
            try:
                qsd = Side(QSD, top, 'qsd')
            except (OSError, QmpError) as e:
                skipped('qemu_storage_daemon', f'does not start: {e}')
        else:
            skipped('qemu_comparisons', 'qemu-storage-daemon is not installed')
        protocol_checks(sd, qsd, top)
        block_checks(sd, qsd)
        runstate_checks(sd)
        r = sd.qmp.cmd('quit')
        rc = wait_exit(sd.proc)
        check('sd_alive_to_the_end', r == {'return': {}} and rc == 0,
              f'{r} rc={rc} {sd.proc.stderr.read().decode()[-3000:]}')
        lifetime_checks(top)
        vm_checks(top)
    except (QmpError, OSError, KeyError, TypeError) as e:
        failed('qmp_conformance', f'{type(e).__name__}: {e}')
    finally:
        qmplib.kill_all()
        for pid in daemon_pids:
            try:
                with open(f'/proc/{pid}/cmdline', 'rb') as f:
                    ours = os.path.basename(SD).encode() in f.read()
                if ours:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(top, ignore_errors=True)
    return 1 if qmplib.failures else 0


if __name__ == '__main__':
    sys.exit(main())
