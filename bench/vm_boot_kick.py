#!/usr/bin/env python3
"""spindle-vm against QEMU, same command line: blkbench boot time, and the
cost of a virtqueue kick.

  bench/vm_boot_kick.py [--runs N]

1. Boot: wall time from exec to blkbench's first BLKBENCH line, and to the
   process's exit, for `spindle-vm` and `qemu-system-x86_64` with the same
   arguments (QEMU gets qboot, which spindle-vm accepts and ignores: it has
   no firmware).  Medians of N runs.
2. Kick: blkbench 4k random reads at iodepth=1 on spindle-vm-test's
   x-test-blk-pci (a memory-backed virtio-blk double served on an iothread),
   with ioeventfd=on (the kick stays in the kernel) and ioeventfd=off (the
   kick exits to user space, which signals the eventfd).  Every request
   kicks, so the difference of mean latencies is the price of the user-space
   exit over the ioeventfd.  QEMU on a null-co drive runs the same job for
   reference (a different device model behind the same transport idea).
3. Kick alone: tests/guest/faulty's "k" mode times 20000 stores to RAM and
   20000 stores to a queue's notify address (the device is never started, so
   nothing but the transport is measured), ioeventfd on and off.  The loop
   runs at CPL0, which KVM emulates here, so the RAM loop is the baseline.

Standard library only; prints a table and the ratios.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

BUILD = os.environ.get("BUILD", "build")
VM = os.path.join(BUILD, "spindle-vm")
VMTEST = os.path.join(BUILD, "tests", "spindle-vm-test")
ELF = os.path.join(BUILD, "guest", "blkbench.elf")
QEMU = "qemu-system-x86_64"
QBOOT = "/usr/share/qemu/qboot.rom"

COMMON = ["-enable-kvm", "-cpu", "host", "-m", "512", "-nographic", "-no-reboot",
          "-bios", QBOOT, "-kernel", ELF, "-device", "isa-debug-exit"]


def timed_boot(argv):
    """(seconds to the first BLKBENCH line, seconds to exit, exit status)."""
    start = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    first = None
    for raw in p.stdout:
        if first is None and b"BLKBENCH" in raw:
            first = time.monotonic() - start
    rc = p.wait()
    return first, time.monotonic() - start, rc


def blkbench(argv):
    out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=120).stdout
    m = re.search(rb"BLKBENCH-RESULT .*? iops=(\d+) .*?lat_mean_ns=(\d+) lat_p50_ns=(\d+)", out)
    if not m:
        sys.exit("no BLKBENCH-RESULT from: " + " ".join(argv))
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


FAULTY = os.path.join(BUILD, "guest", "faulty.elf")


def tsc_hz():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) * 1e6
    return 2.5e9


def kick_loop(ioeventfd):
    out = subprocess.run([VMTEST, "-m", "64", "-nographic", "-kernel", FAULTY, "-append", "k",
                          "-device", "isa-debug-exit", "-device",
                          f"x-test-blk-pci,size=1M,ioeventfd={ioeventfd}"],
                         stdin=subprocess.DEVNULL, capture_output=True, timeout=60).stdout
    m = re.search(rb"KICK ram=0x([0-9a-f]+) mmio=0x([0-9a-f]+)", out)
    if not m:
        sys.exit("no KICK line from the faulty guest")
    hz = tsc_hz()
    return int(m.group(1), 16) / hz / 20000 * 1e6, int(m.group(2), 16) / hz / 20000 * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for f in (VM, VMTEST, ELF):
        if not os.path.exists(f):
            sys.exit(f"{f} missing: run make build-all")

    print(f"boot (no disk), median of {args.runs} runs")
    rows = {}
    for name, exe in (("spindle-vm", VM), ("qemu", QEMU)):
        firsts, totals = [], []
        for _ in range(args.runs):
            first, total, rc = timed_boot([exe] + COMMON)
            if rc != 7:
                sys.exit(f"{name}: exit status {rc}, expected 7")
            firsts.append(first)
            totals.append(total)
        rows[name] = (statistics.median(firsts), statistics.median(totals))
        print(f"  {name:12s} first BLKBENCH line {rows[name][0] * 1000:7.1f} ms   "
              f"exit {rows[name][1] * 1000:7.1f} ms")
    print(f"  qemu/spindle-vm: first line x{rows['qemu'][0] / rows['spindle-vm'][0]:.1f}, "
          f"whole run x{rows['qemu'][1] / rows['spindle-vm'][1]:.1f}")

    job = "rw=randread bs=4k size=16M iodepth=1 runtime=2"
    print(f"\nkick cost: blkbench {job}, median of {args.runs} runs")
    res = {}
    for label, ioeventfd in (("ioeventfd=on", "on"), ("ioeventfd=off", "off")):
        runs = [blkbench([VMTEST] + COMMON + ["-object", "iothread,id=io0", "-device",
                          f"x-test-blk-pci,size=16M,iothread=io0,ioeventfd={ioeventfd}",
                          "-append", job]) for _ in range(args.runs)]
        res[label] = tuple(statistics.median(r[i] for r in runs) for i in range(3))
        print(f"  spindle-vm {label:14s} iops {res[label][0]:7.0f}  mean {res[label][1] / 1000:6.1f} us"
              f"  p50 {res[label][2] / 1000:6.1f} us")
    runs = [blkbench([QEMU] + COMMON + ["-object", "iothread,id=io0", "-drive",
                      "if=none,id=d0,driver=null-co,size=16M,read-zeroes=on", "-device",
                      "virtio-blk-pci,drive=d0,iothread=io0", "-append", job.replace(
                          "runtime=2", "runtime=2")]) for _ in range(args.runs)]
    q = tuple(statistics.median(r[i] for r in runs) for i in range(3))
    print(f"  qemu null-co (ioeventfd)  iops {q[0]:7.0f}  mean {q[1] / 1000:6.1f} us  p50 {q[2] / 1000:6.1f} us")
    delta = (res["ioeventfd=off"][1] - res["ioeventfd=on"][1]) / 1000
    print(f"  a kick through user space costs {delta:.1f} us more than through the ioeventfd")

    print(f"\nkick alone (CPL0 store loop, emulated here), median of {args.runs} runs, us per store")
    for ioeventfd in ("on", "off"):
        runs = [kick_loop(ioeventfd) for _ in range(args.runs)]
        ram = statistics.median(r[0] for r in runs)
        mmio = statistics.median(r[1] for r in runs)
        print(f"  ioeventfd={ioeventfd:3s}  RAM store {ram:5.2f}  notify store {mmio:5.2f}  "
              f"kick {mmio - ram:+5.2f}")


if __name__ == "__main__":
    main()
