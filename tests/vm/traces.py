# SPDX-License-Identifier: MIT
"""Synthetic traces for the VM tests, written with the standard library only
so the test data does not depend on the code under test."""

import struct

DST = bytes.fromhex("020000000001")
SRC = bytes.fromhex("020000000002")
ETHERTYPE = b"\x88\xb5"  # IEEE local experimental


def synthetic_frames(n, sizes=None, start_seq=0, vlan_every=0):
    """n Ethernet frames (without FCS) cycling through `sizes` (default:
    every size 60..1514 in steps of 29), each carrying its sequence number;
    every `vlan_every`-th frame carries an 802.1Q tag (VID = seq % 4095 + 1)."""
    sizes = sizes or list(range(60, 1515, 29)) + [1514]
    frames = []
    for i in range(n):
        size = sizes[i % len(sizes)]
        seq = start_seq + i
        tag = b""
        if vlan_every and i % vlan_every == 0:
            tag = b"\x81\x00" + struct.pack(">H", seq % 4095 + 1)
        head = DST + SRC + tag + ETHERTYPE + struct.pack(">I", seq)
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


def read_pcap(path):
    """(ts_ns, caplen, origlen, data) of a classic pcap (either magic, LE/BE)."""
    b = open(path, "rb").read()
    magic = struct.unpack("<I", b[:4])[0]
    end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nanos = struct.unpack(end + "I", b[:4])[0] == 0xA1B23C4D
    out, at = [], 24
    while at + 16 <= len(b):
        sec, frac, incl, orig = struct.unpack(end + "IIII", b[at:at + 16])
        out.append((sec * 1_000_000_000 + (frac if nanos else frac * 1000), incl, orig, b[at + 16:at + 16 + incl]))
        at += 16 + incl
    return out


def read_pcapng(path):
    """(ts_ns, caplen, origlen, data) of every EPB of a little-endian pcapng
    whose interfaces use nanosecond timestamps; raises on malformed blocks."""
    b = open(path, "rb").read()
    out, at = [], 0
    while at < len(b):
        btype, blen = struct.unpack("<II", b[at:at + 8])
        if blen < 12 or blen % 4 or at + blen > len(b):
            raise ValueError(f"{path}: bad block at {at}")
        if struct.unpack("<I", b[at + blen - 4:at + blen])[0] != blen:
            raise ValueError(f"{path}: trailing length mismatch at {at}")
        if btype == 6:
            _, hi, lo, cap, orig = struct.unpack("<IIIII", b[at + 8:at + 28])
            out.append(((hi << 32) | lo, cap, orig, b[at + 28:at + 28 + cap]))
        at += blen
    return out


def read_raw(path):
    """(ts_ns, caplen, origlen, data) of an HPCAP RAW file, padding skipped."""
    b = open(path, "rb").read()
    out, at = [], 0
    while at + 12 <= len(b):
        sec, nsec, cap, orig = struct.unpack("<IIHH", b[at:at + 12])
        if sec == 0 and nsec == 0:  # padding record: `cap` filler bytes
            at += 12 + cap
            continue
        out.append((sec * 1_000_000_000 + nsec, cap, orig, b[at + 12:at + 12 + cap]))
        at += 12 + cap
    return out


def read_capture(path):
    """Frames of a .pcap, .pcapng or .raw file."""
    path = str(path)
    if path.endswith(".raw"):
        return read_raw(path)
    with open(path, "rb") as f:
        head = f.read(4)
    return read_pcapng(path) if head == b"\n\r\r\n" else read_pcap(path)
