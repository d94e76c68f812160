# SPDX-License-Identifier: MIT
"""Synthetic traces for the VM tests, written with the standard library only
so the test data does not depend on the code under test."""

import struct

DST = bytes.fromhex("020000000001")
SRC = bytes.fromhex("020000000002")
ETHERTYPE = b"\x88\xb5"  # IEEE local experimental


def synthetic_frames(n, sizes=None, start_seq=0):
    """n Ethernet frames (without FCS) cycling through `sizes` (default:
    every size 60..1514 in steps of 29), each carrying its sequence number."""
    sizes = sizes or list(range(60, 1515, 29)) + [1514]
    frames = []
    for i in range(n):
        size = sizes[i % len(sizes)]
        seq = start_seq + i
        head = DST + SRC + ETHERTYPE + struct.pack(">I", seq)
        body = bytes((seq + j) & 0xFF for j in range(size - len(head)))
        frames.append((1_700_000_000_000_000_000 + i * 1000, head + body))
    return frames


def write_pcap(path, frames, nanos=False):
    """Classic little-endian pcap; frames are (ts_ns, bytes)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D if nanos else 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, data in frames:
            frac = ts % 1_000_000_000 if nanos else (ts % 1_000_000_000) // 1000
            f.write(struct.pack("<IIII", ts // 1_000_000_000, frac, len(data), len(data)))
            f.write(data)


def _block(btype, body):
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def write_pcapng(path, frames):
    """pcapng with one Ethernet interface at nanosecond resolution."""
    with open(path, "wb") as f:
        f.write(_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        opts = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
        f.write(_block(1, struct.pack("<HHI", 1, 0, 0) + opts))
        for ts, data in frames:
            f.write(_block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data))
