#!/usr/bin/env python3
"""Block jobs, spindle beside QEMU, run alternately; medians of several runs.

  bench/jobs.sh [-r RUNS] [-s SIZE] [-t SECONDS] [-d DIR]

1. Mirror throughput, no VM: a SIZE (4 GiB) qcow2, every cluster written,
   mirrored to a new qcow2 by blockdev-mirror sync=full in spindle-sd and
   in qemu-storage-daemon (READY, then complete), beside `qemu-img convert
   -t none -T none` of the same image.  O_DIRECT everywhere.
2. Guest IOPS while a mirror runs: the blkbench guest writes 4k blocks at
   random (queue depth 8) for SECONDS on a 1 GiB allocated qcow2, on
   spindle-vm and on QEMU (same command line, qboot for QEMU); a
   drive-mirror to a new qcow2 starts as the guest starts writing, in
   background or write-blocking mode, and stays READY to the end.  The
   loss is 1 - IOPS with the mirror / IOPS without.
3. Time to READY under a guest writing at half the disk's bandwidth: the
   host's fio measures 64k random writes at queue depth 8 on a raw file in
   DIR, the guest writes 64k blocks paced at half of that rate (blkbench
   rate_iops), and the mirror (background) is timed from drive-mirror to
   BLOCK_JOB_READY.
"""

import getopt
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'integration', 'lib'))
from qmp import Qmp, kill_all, start, wait_exit  # noqa: E402

BUILD = os.environ.get('BUILD', 'build')
VM = os.path.join(BUILD, 'spindle-vm')
SD = os.path.join(BUILD, 'spindle-sd')
GUEST = os.path.join(BUILD, 'guest', 'blkbench.elf')
QEMU = 'qemu-system-x86_64'
QSD = 'qemu-storage-daemon'
QBOOT = '/usr/share/qemu/qboot.rom'


def sh(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def rm(path):
    if os.path.exists(path):
        os.unlink(path)


def median(values):
    return statistics.median(values) if values else float('nan')


def size_bytes(text):
    units = {'K': 10, 'M': 20, 'G': 30, 'T': 40}
    if text[-1].upper() in units:
        return int(text[:-1]) << units[text[-1].upper()]
    return int(text)


def fill(path, size):
    """A qcow2 of size with every cluster written (O_DIRECT, 1 MiB writes)."""
    rm(path)
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', path, str(size))
    sh('qemu-img', 'bench', '-q', '-w', '-c', str(size >> 20), '-d', '16', '-s', '1M',
       '-t', 'none', '-f', 'qcow2', '--pattern=0x5a', path)


# ---- 1. Mirror throughput ----------------------------------------------------------------

def daemon_mirror(daemon, src, tgt, size, sock):
    """Seconds from blockdev-mirror to COMPLETED in spindle-sd or qemu-storage-daemon."""
    rm(sock)
    rm(tgt)
    sh('qemu-img', 'create', '-q', '-f', 'qcow2', tgt, str(size))
    node = ('driver=qcow2,node-name={n},file.driver=file,file.filename={f},'
            'file.cache.direct=on,file.aio=io_uring')
    p = start([daemon, '--chardev', f'socket,id=c0,path={sock},server=on,wait=off',
               '--monitor', 'chardev=c0', '--blockdev', node.format(n='src0', f=src),
               '--blockdev', node.format(n='tgt0', f=tgt)])
    try:
        q = Qmp(sock)
        t0 = time.time()
        r = q.cmd('blockdev-mirror', {'job-id': 'm0', 'device': 'src0', 'target': 'tgt0',
                                      'sync': 'full'})
        if r != {'return': {}}:
            raise RuntimeError(f'{daemon}: blockdev-mirror: {r}')
        if not q.wait_event('BLOCK_JOB_READY', 900):
            raise RuntimeError(f'{daemon}: no READY within 900 s')
        q.cmd('block-job-complete', {'device': 'm0'})
        done = q.wait_event('BLOCK_JOB_COMPLETED', 120)
        secs = time.time() - t0
        if not done or 'error' in done['data']:
            raise RuntimeError(f'{daemon}: {done}')
        q.cmd('quit')
        wait_exit(p, 30)
        return secs
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def convert_time(src, tgt):
    rm(tgt)
    t0 = time.time()
    sh('qemu-img', 'convert', '-f', 'qcow2', '-O', 'qcow2', '-t', 'none', '-T', 'none', src, tgt)
    return time.time() - t0


def mirror_throughput(work, size, runs):
    src, tgt = os.path.join(work, 'src.qcow2'), os.path.join(work, 'tgt.qcow2')
    sock = os.path.join(work, 'sd.qmp')
    fill(src, size)
    times = {'spindle-sd mirror': [], 'qemu-storage-daemon mirror': [], 'qemu-img convert': []}
    def spindle():
        times['spindle-sd mirror'].append(daemon_mirror(SD, src, tgt, size, sock))
        if subprocess.run(['qemu-img', 'compare', '-q', src, tgt]).returncode != 0:
            raise RuntimeError('the spindle-sd mirror differs from its source')

    def qsd():
        times['qemu-storage-daemon mirror'].append(daemon_mirror(QSD, src, tgt, size, sock))

    def convert():
        times['qemu-img convert'].append(convert_time(src, tgt))
    order = [spindle, qsd, convert]
    for i in range(runs):
        # Who goes first turns, so that none always inherits the others' cache state.
        for run in order[i % 3:] + order[:i % 3]:
            run()
    rm(src)
    rm(tgt)
    mib = size / (1 << 20)
    print(f'\n1. mirror of a {size >> 30} GiB allocated qcow2 to a new qcow2, '
          f'median of {runs} runs (O_DIRECT)')
    print(f'{"":30} {"seconds":>9} {"MiB/s":>9} {"vs spindle":>11}')
    sp = median(times['spindle-sd mirror'])
    for name, t in times.items():
        m = median(t)
        print(f'{name:30} {m:9.2f} {mib / m:9.0f} {m / sp:11.2f}')


# ---- 2 and 3. Under a guest ----------------------------------------------------------------

class Guest:
    """blkbench on spindle-vm or QEMU, its serial lines and its QMP socket."""

    def __init__(self, vmm, disk, append, sock):
        rm(sock)
        self.vmm = vmm
        head = [VM] if vmm == 'spindle' else [QEMU, '-bios', QBOOT]
        self.lines = []
        self.cond = threading.Condition()
        self.proc = start(head + [
            '-enable-kvm', '-cpu', 'host', '-m', '256', '-nographic', '-no-reboot',
            '-kernel', GUEST, '-append', append,
            '-drive', f'if=none,id=disk0,file={disk},format=qcow2,cache=none,aio=io_uring',
            '-object', 'iothread,id=io0', '-device', 'virtio-blk-pci,drive=disk0,iothread=io0',
            '-device', 'isa-debug-exit', '-qmp', f'unix:{sock},server=on,wait=off'])
        threading.Thread(target=self._read, daemon=True).start()
        self.qmp = Qmp(sock)

    def _read(self):
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw.decode(errors='replace').rstrip())
                self.cond.notify_all()

    def wait_line(self, text, timeout):
        deadline = time.time() + timeout
        with self.cond:
            while not any(text in line for line in self.lines):
                if time.time() >= deadline:
                    return False
                self.cond.wait(deadline - time.time())
        return True

    def iops(self, timeout):
        wait_exit(self.proc, timeout)
        self.wait_line('BLKBENCH-DONE', 2)
        # One queue prints queue=0 only; several print queue=all last.
        results = [line for line in self.lines if line.startswith('BLKBENCH-RESULT')]
        if results:
            return int(results[-1].split(' iops=')[1].split()[0])
        raise RuntimeError('no result: ' + ' | '.join(self.lines[-4:]))

    def tail(self):
        """The last console lines and what the VMM said on stderr, for a failed run."""
        err = ''
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors='replace')[-600:]
        return ' | '.join(self.lines[-4:]) + ' | exit ' + str(self.proc.poll()) + ' ' + err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def mirror_args(tgt, mode):
    return {'device': 'disk0', 'job-id': 'm0', 'target': tgt, 'format': 'qcow2',
            'sync': 'full', 'copy-mode': mode}


def guest_run(vmm, disk, tgt, sock, secs, mode):
    """The guest's IOPS over secs of 4k random writes, with a mirror in mode (or none)."""
    rm(tgt)
    g = Guest(vmm, disk, f'rw=randwrite bs=4k iodepth=8 runtime={secs}', sock)
    try:
        if not g.wait_line('BLKBENCH-PHASE job=0 write start', 30):
            raise RuntimeError(f'{vmm}: the guest did not start: {g.lines[-3:]}')
        if mode:
            try:
                r = g.qmp.cmd('drive-mirror', mirror_args(tgt, mode))
            except OSError as e:
                r = e
            if r != {'return': {}}:
                time.sleep(1)
                print(f'   {vmm}, {mode}: drive-mirror failed ({r}): {g.tail()}', flush=True)
                return None
        return g.iops(secs + 60)
    finally:
        g.kill()


def time_to_ready(vmm, disk, tgt, sock, rate, limit):
    """Seconds to READY for a background mirror while the guest writes 64k at rate IOPS."""
    rm(tgt)
    g = Guest(vmm, disk, f'rw=randwrite bs=64k iodepth=8 runtime={limit + 10} '
                         f'rate_iops={rate}', sock)
    try:
        if not g.wait_line('BLKBENCH-PHASE job=0 write start', 30):
            raise RuntimeError(f'{vmm}: the guest did not start: {g.lines[-3:]}')
        time.sleep(1)
        t0 = time.time()
        r = g.qmp.cmd('drive-mirror', mirror_args(tgt, 'background'))
        if r != {'return': {}}:
            raise RuntimeError(f'{vmm}: drive-mirror: {r}')
        ready = g.qmp.wait_event('BLOCK_JOB_READY', limit)
        secs = time.time() - t0 if ready else float('inf')
        jobs = g.qmp.cmd('query-block-jobs').get('return', [])
        switched = any(j.get('x-copy-mode-auto-switched') for j in jobs)
        return secs, switched
    finally:
        g.kill()


def host_randwrite_iops(work, secs, bs):
    path = os.path.join(work, 'fio.raw')
    sh('qemu-img', 'create', '-q', '-f', 'raw', path, '1G')
    sh('qemu-img', 'bench', '-q', '-w', '-c', '1024', '-d', '16', '-s', '1M', '-t', 'none',
       '-f', 'raw', path)
    out = subprocess.run(['fio', '--name=disk', f'--filename={path}', '--direct=1',
                          '--ioengine=io_uring', '--rw=randwrite', f'--bs={bs}', '--iodepth=8',
                          f'--runtime={secs}', '--time_based', '--output-format=terse'],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    rm(path)
    return int(out.strip().splitlines()[-1].split(';')[48])


def under_guest(work, runs, secs):
    disk, tgt = os.path.join(work, 'disk.qcow2'), os.path.join(work, 'mirror.qcow2')
    sock = os.path.join(work, 'vm.qmp')
    fill(disk, 1 << 30)
    modes = [None, 'background', 'write-blocking']
    iops = {(v, m): [] for v in ('spindle', 'qemu') for m in modes}
    for _ in range(runs):
        for m in modes:
            for v in ('spindle', 'qemu'):
                r = guest_run(v, disk, tgt, sock, secs, m)
                if r is not None:
                    iops[(v, m)].append(r)
    print(f'\n2. guest 4k randwrite QD8 IOPS on a 1 GiB allocated qcow2 for {secs} s, '
          f'a mirror from the start, median of {runs} runs')
    print(f'{"mirror":16} {"spindle":>9} {"loss":>6} {"qemu":>9} {"loss":>6} {"s/q":>6}')
    for m in modes:
        s, q = median(iops[('spindle', m)]), median(iops[('qemu', m)])
        s0, q0 = median(iops[('spindle', None)]), median(iops[('qemu', None)])
        print(f'{m or "none":16} {s:9.0f} {1 - s / s0:6.0%} {q:9.0f} {1 - q / q0:6.0%} '
              f'{s / q:6.2f}')

    disk_iops = host_randwrite_iops(work, 5, '64k')
    rate = disk_iops // 2
    limit = 120
    ready = {'spindle': [], 'qemu': []}
    switched = 0
    for _ in range(runs):
        for v in ('spindle', 'qemu'):
            secs, sw = time_to_ready(v, disk, tgt, sock, rate, limit)
            ready[v].append(secs)
            switched += sw
    print(f'\n3. time to READY of a background mirror of the 1 GiB qcow2 while the guest '
          f'writes 64k blocks at {rate}/s\n   ({rate * 64 // 1024} MiB/s: half of the host '
          f'fio\'s {disk_iops} 64k randwrite IOPS at QD8), median of {runs} runs; '
          f'inf: not READY within {limit} s')
    s, q = median(ready['spindle']), median(ready['qemu'])
    print(f'{"":16} {"spindle":>9} {"qemu":>9} {"q/s":>6}')
    print(f'{"seconds":16} {s:9.2f} {q:9.2f} {q / s:6.2f}')
    print(f'   spindle\'s mirror switched itself to write-blocking in {switched} of {runs} runs '
          f'(QEMU\'s never does)')
    rm(disk)
    rm(tgt)


def main():
    runs, size, secs, top = 3, 4 << 30, 10, os.environ.get('TMPDIR', '/var/tmp')
    opts, _ = getopt.getopt(sys.argv[1:], 'r:s:t:d:')
    for o, v in opts:
        if o == '-r':
            runs = int(v)
        elif o == '-s':
            size = size_bytes(v)
        elif o == '-t':
            secs = int(v)
        elif o == '-d':
            top = v
    for prog in (VM, SD, GUEST):
        if not os.path.exists(prog):
            sys.exit(f'{prog} is not built (make)')
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo')
                if line.startswith('model name')), '?')
    print(f'machine: {os.cpu_count()} CPUs, {cpu}')
    with tempfile.TemporaryDirectory(prefix='spindle-jobs-bench-', dir=top) as work:
        try:
            mirror_throughput(work, size, runs)
            under_guest(work, runs, secs)
        finally:
            kill_all()


if __name__ == '__main__':
    main()
