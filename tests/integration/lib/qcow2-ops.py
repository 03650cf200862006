#!/usr/bin/env python3
"""Random qemu-io/spindle-io commands, one per line, for the qcow2 tests.

    qcow2-ops.py SEED SIZE COUNT [--aligned-discard CLUSTER]

Writes of patterns at random (sector aligned) offsets and lengths, zero
writes with and without unmap, and discards.  The same list fed to qemu-io
and spindle-io must give the same image.
"""
import random
import sys

seed, size, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
align = None
if len(sys.argv) > 5 and sys.argv[4] == '--aligned-discard':
    align = int(sys.argv[5])
r = random.Random(seed)
for _ in range(count):
    op = r.random()
    off = r.randrange(0, size // 512) * 512
    length = min(r.choice([512, 1536, 4096, 8192, 65536, 131072, 300 * 1024, 1 << 20]), size - off)
    if length <= 0:
        continue
    if op < 0.65:
        print(f"write -P {r.randrange(1, 255)} {off} {length}")
    elif op < 0.80:
        print(f"write -z {off} {length}")
    elif op < 0.90:
        print(f"write -z -u {off} {length}")
    else:
        if align:
            off -= off % align
            length = max(align, length - length % align)
            length = min(length, size - off)
        print(f"discard {off} {length}")
