#!/usr/bin/env python3
"""Change bytes of an image in place, for the corruption tests.

    poke.py FILE OFFSET FMT VALUE    FMT: a struct code (big endian), e.g. Q, I, H, B
"""
import struct
import sys

path, off, fmt, val = sys.argv[1], int(sys.argv[2], 0), sys.argv[3], int(sys.argv[4], 0)
with open(path, 'r+b') as f:
    f.seek(off)
    f.write(struct.pack('>' + fmt, val))
