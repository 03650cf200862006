#!/usr/bin/env python3
"""Block jobs over QMP, under live writes, and without a VM.

spindle-vm runs the blkbench guest on a qcow2 disk: it fills a region with
self-checking pattern blocks, then writes blocks at random (remembering the
generation it wrote to each) while this script, over QMP, runs a job under
it; then the guest reads back and verifies every block through whatever node
the device ended on.  The host then runs `qemu-img check` on every image and,
where a copy is a point in time, boots blkbench once more to verify that copy
block by block (each block must be a valid pattern block).

  - drive-mirror to a new qcow2 -> READY -> complete (the guest continues on it)
  - blockdev-snapshot-sync, writes, active block-commit -> READY -> complete
  - a three-deep chain: block-stream, then an intermediate block-commit
  - blockdev-backup full, then incremental with a dirty bitmap
  - cancel before READY; cancel after READY (a consistent copy: qemu-img compare)
  - pause/resume; set-speed held within 10% over 5 s
  - a target failing with EIO (blkdebug): on-target-error=report and =stop
  - a mirror under a heavy write load reaching READY by going write-blocking
and on spindle-sd, with no VM: stream, commit and backup on idle images,
checked with qemu-img compare.

Python 3 standard library only; one PASS:/FAIL:/SKIP: line per check.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'lib'))
import qmp as qmplib  # noqa: E402
from qmp import Qmp, QmpError, check, failed, skipped, start, wait_exit  # noqa: E402

BUILD = os.environ.get('BUILD', 'build')
VM = os.path.join(BUILD, 'spindle-vm')
SD = os.path.join(BUILD, 'spindle-sd')
GUEST = os.path.join(BUILD, 'guest', 'blkbench.elf')
REGION = '16M'
SANITIZED = bool(os.environ.get('SPINDLE_SANITIZE'))


def run(*argv):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def qemu_img(*args):
    return run('qemu-img', *args)


def img_ok(name, path):
    r = qemu_img('check', path)
    return check(f'{name}_qemu_img_check', r.returncode == 0, r.stdout[-500:])


class Vm:
    """spindle-vm with blkbench on one disk, its serial output and its QMP socket."""

    def __init__(self, top, name, disk, append, fmt='qcow2'):
        self.name = name
        self.sock = os.path.join(top, f'{name}.qmp')
        self.lines = []
        self.cond = threading.Condition()
        argv = [VM, '-enable-kvm', '-cpu', 'host', '-m', '256', '-nographic', '-no-reboot',
                '-kernel', GUEST, '-append', append,
                '-drive', f'if=none,id=disk0,file={disk},format={fmt},cache=none,aio=io_uring',
                '-object', 'iothread,id=io0',
                '-device', 'virtio-blk-pci,drive=disk0,iothread=io0,id=vd0',
                '-device', 'isa-debug-exit',
                '-qmp', f'unix:{self.sock},server=on,wait=off']
        self.proc = start(argv)
        threading.Thread(target=self._read, daemon=True).start()
        self.qmp = Qmp(self.sock)

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors='replace').rstrip()
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def wait_line(self, text, timeout=60):
        deadline = time.time() + timeout
        with self.cond:
            while not any(text in line for line in self.lines):
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def writing(self):
        """Whether the guest reached its random-write phase (a FAIL line if not)."""
        ok = self.wait_line('BLKBENCH-PHASE job=1 write start')
        return check(f'{self.name}_guest_writing', ok, ' | '.join(self.lines[-4:]))

    def finish(self, timeout=120):
        """Wait for the guest's end: (guest status, the last lines)."""
        rc = wait_exit(self.proc, timeout)
        self.wait_line('BLKBENCH-DONE', 1)
        tail = ' | '.join(self.lines[-4:])
        if rc is None:
            return None, 'timed out: ' + tail
        done = [line for line in self.lines if line.startswith('BLKBENCH-DONE')]
        status = int(done[-1].split('=')[1]) if done else None
        return status, tail + ' ' + self.proc.stderr.read().decode()[-400:]


def guest_append(runtime, iodepth=8):
    # A prefill of valid pattern blocks, then random writes with a verify pass.
    return (f'rw=write bs=4k iodepth=16 size={REGION} verify=pattern -- '
            f'rw=randwrite bs=4k iodepth={iodepth} size={REGION} runtime={runtime} '
            f'verify=pattern')


def guest_verified(name, vm):
    status, why = vm.finish()
    return check(f'{name}_guest_verified', status == 0, why)


def wait_job_event(q, event, job, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        e = q.wait_event(event, max(0.1, deadline - time.time()))
        if e is None:
            return None
        if e['data'].get('device', e['data'].get('id')) == job:
            return e
    return None


def job_info(q, job):
    for j in q.cmd('query-block-jobs').get('return', []):
        if j['device'] == job:
            return j
    return None


def new_qcow2(path, size=REGION, backing=None):
    args = ['create', '-q', '-f', 'qcow2']
    if backing:
        args += ['-b', backing, '-F', 'qcow2']
    return qemu_img(*args, path, size).returncode == 0


def verify_copy(top, name, path):
    """A fresh blkbench reads path and checks that every block is a valid pattern block."""
    vm = Vm(top, name + '_verify', path, f'rw=read bs=4k iodepth=16 size={REGION} verify=pattern')
    vm.qmp.close()
    status, why = vm.finish()
    return check(f'{name}_copy_is_consistent', status == 0, why)


# ---- The scenarios under a running guest -------------------------------------

def mirror_complete(top):
    disk, tgt = os.path.join(top, 'm.qcow2'), os.path.join(top, 'm-target.qcow2')
    new_qcow2(disk)
    vm = Vm(top, 'mirror', disk, guest_append(8))
    if not vm.writing():
        return
    r = vm.qmp.cmd('drive-mirror', {'device': 'disk0', 'job-id': 'm0', 'target': tgt,
                                    'format': 'qcow2', 'sync': 'full'})
    check('mirror_started', r == {'return': {}}, str(r))
    # The new target is opened as the source is (cache=none: O_DIRECT), as QEMU does.
    caches = [n['cache'] for n in vm.qmp.cmd('query-named-block-nodes')['return']
              if n['file'] == tgt]
    check('mirror_target_cache_as_source', caches and all(c['direct'] for c in caches),
          str(caches))
    check('mirror_ready', wait_job_event(vm.qmp, 'BLOCK_JOB_READY', 'm0') is not None,
          'no BLOCK_JOB_READY')
    r = vm.qmp.cmd('block-job-complete', {'device': 'm0'})
    done = wait_job_event(vm.qmp, 'BLOCK_JOB_COMPLETED', 'm0')
    check('mirror_completed', r == {'return': {}} and done and 'error' not in done['data'],
          f'{r} {done}')
    blk = vm.qmp.cmd('query-block')['return'][0]
    check('mirror_pivoted', blk['inserted']['file'] == tgt, str(blk['inserted'].get('file')))
    guest_verified('mirror', vm)
    img_ok('mirror_target', tgt)


def snapshot_and_active_commit(top):
    disk, snap = os.path.join(top, 's.qcow2'), os.path.join(top, 's-snap.qcow2')
    new_qcow2(disk)
    vm = Vm(top, 'snap', disk, guest_append(8))
    if not vm.writing():
        return
    r = vm.qmp.cmd('blockdev-snapshot-sync', {'device': 'disk0', 'snapshot-file': snap,
                                              'snapshot-node-name': 'snap0', 'format': 'qcow2'})
    check('snapshot_sync', r == {'return': {}}, str(r))
    time.sleep(1.5)      # writes land in the overlay
    blk = vm.qmp.cmd('query-block')['return'][0]['inserted']
    check('snapshot_on_top', blk['file'] == snap and blk.get('backing_file') == disk,
          str(blk))
    r = vm.qmp.cmd('block-commit', {'device': 'disk0', 'job-id': 'ac0'})
    check('active_commit_started', r == {'return': {}}, str(r))
    check('active_commit_ready', wait_job_event(vm.qmp, 'BLOCK_JOB_READY', 'ac0') is not None,
          'no BLOCK_JOB_READY')
    vm.qmp.cmd('block-job-complete', {'device': 'ac0'})
    done = wait_job_event(vm.qmp, 'BLOCK_JOB_COMPLETED', 'ac0')
    check('active_commit_completed', done and 'error' not in done['data'], str(done))
    blk = vm.qmp.cmd('query-block')['return'][0]['inserted']
    check('active_commit_back_on_base', blk['file'] == disk and not blk.get('backing_file'),
          str(blk))
    guest_verified('snapshot_merge', vm)
    img_ok('snapshot_merge_base', disk)


def stream_and_commit(top):
    base, mid, leaf = (os.path.join(top, f'c-{n}.qcow2') for n in ('base', 'mid', 'top'))
    new_qcow2(base)
    run('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x11 0 4M', base)
    new_qcow2(mid, backing=base)
    run('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x22 2M 4M', mid)
    new_qcow2(leaf, backing=mid)
    vm = Vm(top, 'chain', leaf, guest_append(10))
    if not vm.writing():
        return
    nodes = {n['file']: n['node-name'] for n in vm.qmp.cmd('query-named-block-nodes')['return']
             if n['drv'] == 'qcow2'}
    # Intermediate commit: mid into base, while the guest writes to the top.
    r = vm.qmp.cmd('block-commit', {'device': 'disk0', 'job-id': 'c0', 'top-node': nodes[mid],
                                    'base-node': nodes[base]})
    done = wait_job_event(vm.qmp, 'BLOCK_JOB_COMPLETED', 'c0')
    check('commit_intermediate', r == {'return': {}} and done and 'error' not in done['data'],
          f'{r} {done}')
    blk = vm.qmp.cmd('query-block')['return'][0]['inserted']
    check('commit_dropped_mid', blk.get('backing_file') == base, str(blk))
    # Stream the rest into the top: no backing left.
    r = vm.qmp.cmd('block-stream', {'device': 'disk0', 'job-id': 's0'})
    done = wait_job_event(vm.qmp, 'BLOCK_JOB_COMPLETED', 's0')
    check('stream', r == {'return': {}} and done and 'error' not in done['data'], f'{r} {done}')
    blk = vm.qmp.cmd('query-block')['return'][0]['inserted']
    check('stream_no_backing', not blk.get('backing_file'), str(blk))
    guest_verified('stream_commit', vm)
    img_ok('stream_top', leaf)
    img_ok('commit_base', base)
    info = qemu_img('info', leaf).stdout
    check('stream_header_has_no_backing', 'backing file' not in info, info)


def backups(top):
    disk = os.path.join(top, 'b.qcow2')
    full, inc = os.path.join(top, 'b-full.qcow2'), os.path.join(top, 'b-inc.qcow2')
    new_qcow2(disk)
    vm = Vm(top, 'backup', disk, guest_append(10))
    if not vm.writing():
        return
    new_qcow2(full)
    r1 = vm.qmp.cmd('block-dirty-bitmap-add', {'node': vm_node(vm), 'name': 'inc0'})
    r2 = vm.qmp.cmd('blockdev-add', {'driver': 'qcow2', 'node-name': 'full0',
                                     'file': {'driver': 'file', 'filename': full}})
    r = vm.qmp.cmd('blockdev-backup', {'device': 'disk0', 'job-id': 'b0', 'target': 'full0',
                                       'sync': 'full'})
    done = wait_job_event(vm.qmp, 'BLOCK_JOB_COMPLETED', 'b0')
    check('backup_full', r1 == r2 == r == {'return': {}} and done and 'error' not in done['data'],
          f'{r1} {r2} {r} {done}')
    time.sleep(1)        # more writes: the bitmap marks them
    new_qcow2(inc, backing=full)
    vm.qmp.cmd('blockdev-add', {'driver': 'qcow2', 'node-name': 'inc0n', 'backing': None,
                                'file': {'driver': 'file', 'filename': inc}})
    r = vm.qmp.cmd('blockdev-backup', {'device': 'disk0', 'job-id': 'b1', 'target': 'inc0n',
                                       'sync': 'incremental', 'bitmap': 'inc0'})
    done = wait_job_event(vm.qmp, 'BLOCK_JOB_COMPLETED', 'b1')
    check('backup_incremental', r == {'return': {}} and done and 'error' not in done['data'],
          f'{r} {done}')
    vm.qmp.cmd('blockdev-del', {'node-name': 'inc0n'})
    vm.qmp.cmd('blockdev-del', {'node-name': 'full0'})
    guest_verified('backup', vm)
    img_ok('backup_full', full)
    img_ok('backup_incremental', inc)
    verify_copy(top, 'backup_full', full)
    verify_copy(top, 'backup_incremental', inc)


def vm_node(vm):
    return vm.qmp.cmd('query-block')['return'][0]['inserted']['node-name']


def cancels_pause_speed(top):
    disk, tgt = os.path.join(top, 'x.qcow2'), os.path.join(top, 'x-target.qcow2')
    new_qcow2(disk)
    vm = Vm(top, 'cancel', disk, guest_append(25 if not SANITIZED else 30))
    if not vm.writing():
        return
    # Before READY: a slow mirror, cancelled.
    r = vm.qmp.cmd('drive-mirror', {'device': 'disk0', 'job-id': 'x0', 'target': tgt,
                                    'format': 'qcow2', 'sync': 'full', 'speed': 65536})
    time.sleep(0.5)
    r2 = vm.qmp.cmd('block-job-cancel', {'device': 'x0'})
    e = wait_job_event(vm.qmp, 'BLOCK_JOB_CANCELLED', 'x0')
    check('cancel_before_ready', r == r2 == {'return': {}} and e is not None, f'{r} {r2} {e}')
    # Pause and resume; the set speed holds within 10% over 5 s.
    speed = 1024 * 1024
    r = vm.qmp.cmd('drive-mirror', {'device': 'disk0', 'job-id': 'x1', 'target': tgt,
                                    'format': 'qcow2', 'sync': 'full', 'speed': speed})
    if not check('mirror_restarted_after_cancel', r == {'return': {}}, str(r)):
        return
    time.sleep(1)
    vm.qmp.cmd('block-job-pause', {'device': 'x1'})
    time.sleep(0.5)
    a = job_info(vm.qmp, 'x1')
    time.sleep(1)
    b = job_info(vm.qmp, 'x1')
    check('paused', a and b and a['paused'] and a['offset'] == b['offset'], f'{a} {b}')
    r = vm.qmp.cmd('block-job-resume', {'device': 'x1'})
    time.sleep(0.5)
    a = job_info(vm.qmp, 'x1')
    time.sleep(5)
    b = job_info(vm.qmp, 'x1')
    rate = (b['offset'] - a['offset']) / 5 if a and b else 0
    check('set_speed_within_10_percent', abs(rate - speed) <= 0.1 * speed,
          f'{rate:.0f} B/s for a limit of {speed}')
    vm.qmp.cmd('block-job-set-speed', {'device': 'x1', 'speed': 0})
    # After READY, in the guest's verify phase (no writes): a consistent copy.
    check('cancel_after_ready_ready', wait_job_event(vm.qmp, 'BLOCK_JOB_READY', 'x1', 60)
          is not None, 'no READY')
    vm.wait_line('job=1 verify start', 60)
    vm.qmp.cmd('block-job-cancel', {'device': 'x1'})
    e = wait_job_event(vm.qmp, 'BLOCK_JOB_COMPLETED', 'x1')
    check('cancel_after_ready_completes', e is not None and 'error' not in e['data'], str(e))
    guest_verified('cancels', vm)
    # The guest only read since the cancel; compared once it has gone, as the
    # source's metadata may sit in spindle's caches while it runs.
    c = qemu_img('compare', disk, tgt)
    check('cancel_after_ready_copy_equal', c.returncode == 0, c.stdout)
    img_ok('cancel_target', tgt)


def failing_target(top):
    disk, tgt = os.path.join(top, 'f.qcow2'), os.path.join(top, 'f-target.qcow2')
    new_qcow2(disk)
    vm = Vm(top, 'fail', disk, guest_append(10))
    if not vm.writing():
        return
    for policy, once in (('report', False), ('stop', True)):
        new_qcow2(tgt)
        node = f'bad{policy}'
        r = vm.qmp.cmd('blockdev-add', {
            'driver': 'qcow2', 'node-name': node,
            'file': {'driver': 'blkdebug', 'image': {'driver': 'file', 'filename': tgt},
                     'inject-error': [{'event': 'pwritev', 'errno': 5, 'once': once}]}})
        r = vm.qmp.cmd('blockdev-mirror', {'device': 'disk0', 'job-id': f'f{policy}',
                                           'target': node, 'sync': 'full',
                                           'on-target-error': policy})
        err = wait_job_event(vm.qmp, 'BLOCK_JOB_ERROR', f'f{policy}')
        check(f'target_eio_{policy}_error_event', r == {'return': {}} and err and
              err['data']['action'] == policy and err['data']['operation'] == 'write',
              f'{r} {err}')
        if policy == 'report':
            done = wait_job_event(vm.qmp, 'BLOCK_JOB_COMPLETED', 'freport')
            check('target_eio_report_fails_job', done and 'error' in done['data'], str(done))
        else:
            info = job_info(vm.qmp, 'fstop')
            check('target_eio_stop_pauses', info and info['paused'] and
                  info['status'] == 'paused', str(info))
            vm.qmp.cmd('block-job-resume', {'device': 'fstop'})
            ready = wait_job_event(vm.qmp, 'BLOCK_JOB_READY', 'fstop', 60)
            check('target_eio_stop_resumes', ready is not None, 'no READY after resume')
            vm.qmp.cmd('block-job-cancel', {'device': 'fstop', 'force': True})
            wait_job_event(vm.qmp, 'BLOCK_JOB_CANCELLED', 'fstop')
        vm.qmp.cmd('blockdev-del', {'node-name': node})
    guest_verified('failing_target', vm)


def heavy_load_write_blocking(top):
    disk, tgt = os.path.join(top, 'h.qcow2'), os.path.join(top, 'h-target.qcow2')
    new_qcow2(disk)
    vm = Vm(top, 'heavy', disk, guest_append(20, iodepth=32))
    if not vm.writing():
        return
    # A mirror slower than the guest's writes cannot converge in background mode.
    r = vm.qmp.cmd('drive-mirror', {'device': 'disk0', 'job-id': 'h0', 'target': tgt,
                                    'format': 'qcow2', 'sync': 'full', 'speed': 2 * 1024 * 1024})
    switched = None
    deadline = time.time() + 15
    while time.time() < deadline and not switched:
        time.sleep(0.5)
        for j in vm.qmp.cmd('query-jobs')['return']:
            if j['id'] == 'h0' and j.get('copy-mode') == 'write-blocking':
                switched = j
    check('heavy_load_switches_to_write_blocking', r == {'return': {}} and switched is not None,
          f'{r} {vm.qmp.cmd("query-jobs")}')
    vm.qmp.cmd('block-job-set-speed', {'device': 'h0', 'speed': 0})
    check('heavy_load_reaches_ready', wait_job_event(vm.qmp, 'BLOCK_JOB_READY', 'h0', 60)
          is not None, 'no READY')
    vm.qmp.cmd('block-job-complete', {'device': 'h0'})
    done = wait_job_event(vm.qmp, 'BLOCK_JOB_COMPLETED', 'h0')
    check('heavy_load_completed', done and 'error' not in done['data'], str(done))
    guest_verified('heavy_load', vm)
    img_ok('heavy_load_target', tgt)


# ---- spindle-sd: jobs on idle images ------------------------------------------

def sd_jobs(top):
    sock = os.path.join(top, 'sd.qmp')
    base, mid, leaf = (os.path.join(top, f'sd-{n}.qcow2') for n in ('base', 'mid', 'top'))
    new_qcow2(base, '8M')
    run('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x31 0 3M', base)
    new_qcow2(mid, '8M', backing=base)
    run('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x32 2M 3M', mid)
    new_qcow2(leaf, '8M', backing=mid)
    run('qemu-io', '-f', 'qcow2', '-c', 'write -P 0x33 4M 3M', leaf)
    # What the guest sees, flattened by qemu-img, to compare with afterwards.
    ref = os.path.join(top, 'sd-ref.raw')
    qemu_img('convert', '-O', 'raw', leaf, ref)
    p = start([SD, '--chardev', f'socket,id=c0,path={sock},server=on,wait=off',
               '--monitor', 'chardev=c0',
               '--blockdev', f'driver=qcow2,node-name=top0,file.driver=file,'
                             f'file.filename={leaf}'])
    q = Qmp(sock)
    nodes = {n['file']: n['node-name'] for n in q.cmd('query-named-block-nodes')['return']
             if n['drv'] == 'qcow2'}
    r = q.cmd('block-commit', {'device': 'top0', 'job-id': 'sc', 'top-node': nodes[mid],
                               'base-node': nodes[base]})
    done = wait_job_event(q, 'BLOCK_JOB_COMPLETED', 'sc')
    check('sd_commit', r == {'return': {}} and done and 'error' not in done['data'], f'{r} {done}')
    bk = os.path.join(top, 'sd-backup.qcow2')
    new_qcow2(bk, '8M')
    q.cmd('blockdev-add', {'driver': 'qcow2', 'node-name': 'bk0',
                           'file': {'driver': 'file', 'filename': bk}})
    r = q.cmd('blockdev-backup', {'device': 'top0', 'job-id': 'sb', 'target': 'bk0',
                                  'sync': 'full'})
    done = wait_job_event(q, 'BLOCK_JOB_COMPLETED', 'sb')
    check('sd_backup', r == {'return': {}} and done and 'error' not in done['data'], f'{r} {done}')
    q.cmd('blockdev-del', {'node-name': 'bk0'})
    r = q.cmd('block-stream', {'device': 'top0', 'job-id': 'ss'})
    done = wait_job_event(q, 'BLOCK_JOB_COMPLETED', 'ss')
    check('sd_stream', r == {'return': {}} and done and 'error' not in done['data'], f'{r} {done}')
    q.cmd('quit')
    check('sd_exit', wait_exit(p) == 0, p.stderr.read().decode()[-500:])
    for name, path in (('sd_stream_top', leaf), ('sd_backup', bk)):
        c = qemu_img('compare', path, ref)
        check(f'{name}_equals_the_original', c.returncode == 0, c.stdout)
        img_ok(name, path)
    info = qemu_img('info', leaf).stdout
    check('sd_stream_no_backing', 'backing file' not in info, info)


def main():
    for f in (VM, SD, GUEST):
        if not os.path.exists(f):
            failed('qmp_jobs', f'{f} missing (run make build-all first)')
            return 1
    if not shutil.which('qemu-img') or not shutil.which('qemu-io'):
        skipped('qmp_jobs', 'qemu-img/qemu-io are not installed')
        return 0
    top = tempfile.mkdtemp(prefix='spindle-jobs-')
    try:
        sd_jobs(top)
        if not os.access('/dev/kvm', os.R_OK | os.W_OK):
            skipped('qmp_jobs_vm', 'no usable /dev/kvm')
        else:
            for scenario in (mirror_complete, snapshot_and_active_commit, stream_and_commit,
                             backups, cancels_pause_speed, failing_target,
                             heavy_load_write_blocking):
                try:
                    scenario(top)
                except (QmpError, OSError, KeyError, TypeError, IndexError) as e:
                    failed(scenario.__name__, f'{type(e).__name__}: {e}')
                finally:
                    qmplib.kill_all()
    finally:
        qmplib.kill_all()
        shutil.rmtree(top, ignore_errors=True)
    return 1 if qmplib.failures else 0


if __name__ == '__main__':
    sys.exit(main())
