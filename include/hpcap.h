/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * hpcap.h - userspace ABI of /dev/hpcapN (hpcap-rs).
 *
 * One character device per captured port or virtual function. An open file
 * becomes a listener with its own read cursor into the device's stream at
 * its first read/WAIT/poll or with HPCAP_IOC_ATTACH (blocking if the file may
 * block, i.e. was opened for writing or by CAP_NET_ADMIN: it holds the
 * producer back and never loses data; lossy otherwise: it never holds the
 * producer back and skips forward when overrun). A named listener
 * (HPCAP_IOC_ATTACH_NAMED) survives the death of its process for a linger
 * time, so a restarted reader resumes where it stopped. The stream is a
 * sequence of fixed-size blocks of pcapng (or HPCAP RAW) records; see
 * docs/formats.md and docs/abi.md.
 *
 *   read(fd, buf, n)     copies stream bytes from the cursor and advances it
 *                        (so `dd if=/dev/hpcap0 bs=4M` yields a pcapng stream
 *                        prefix: the first read returns the 4 KiB file header)
 *   mmap(NULL, 2*buffer_size, PROT_READ, MAP_SHARED, fd, 0)
 *                        maps the buffer read-only, twice back to back, so the
 *                        bytes at stream offset o are at map + o % buffer_size
 *                        for up to buffer_size bytes, wrap or not. PROT_WRITE
 *                        or PROT_EXEC mappings fail with EACCES.
 *   poll/epoll           POLLIN when at least the wait threshold is available
 *                        (HPCAP_IOC_WAIT min_bytes, default 1 block), POLLHUP
 *                        when the device went away or the listener was killed.
 *   ioctl                below. Unknown commands: ENOTTY. Bad arguments:
 *                        EINVAL. Bad pointers: EFAULT. Admin commands need
 *                        CAP_NET_ADMIN: EPERM.
 *
 * All structures have fixed layouts made of naturally aligned __u32/__u64
 * fields with explicit reserved fields (which must be zero on input and are
 * zero on output). The same layouts are defined in core/src/abi.rs; a test
 * compares them with bindgen's view of this header.
 */
#ifndef _UAPI_HPCAP_H
#define _UAPI_HPCAP_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define HPCAP_ABI_VERSION 4
#define HPCAP_IOC_MAGIC 'h'
#define HPCAP_MAX_LISTENERS 16

/* Stream formats (hpcap_info.format, hpcap_config.format). */
#define HPCAP_FORMAT_PCAPNG 0 /* native pcapng blocks, ns timestamps */
#define HPCAP_FORMAT_RAW 1    /* HPCAP RAW records, byte-exact */

/* NIC backends (hpcap_info.nic). */
#define HPCAP_NIC_IGB 0   /* Intel 82576 PF */
#define HPCAP_NIC_IGBVF 1 /* Intel 82576 VF */
#define HPCAP_NIC_I40E 2  /* Intel XL710 PF */
#define HPCAP_NIC_IAVF 3  /* Intel XL710/E810 VF */
#define HPCAP_NIC_IXGBE 4   /* Intel 82599 PF */
#define HPCAP_NIC_IXGBEVF 5 /* Intel 82599 VF */
#define HPCAP_NIC_SOFT 15 /* software source (hpcap-sim), no NIC */

/* Listener modes (hpcap_attach.mode, hpcap_listener.mode). */
#define HPCAP_MODE_BLOCKING 0
#define HPCAP_MODE_LOSSY 1

/* hpcap_listener.flags: an administrator killed the listener; it holds
 * nobody back and its owner gets end-of-stream until it detaches. */
#define HPCAP_LISTENER_KILLED (1u << 0)
/* hpcap_listener.flags: the listener has a name (hpcap_listener.name). */
#define HPCAP_LISTENER_NAMED (1u << 1)
/* hpcap_listener.flags: its file was closed without HPCAP_IOC_DETACH; it
 * still holds the producer back and waits linger_left_ms more for an
 * HPCAP_IOC_ATTACH_NAMED with its name. */
#define HPCAP_LISTENER_LINGERING (1u << 2)

/* Named listeners: the name field holds 1..31 characters of [A-Za-z0-9._-],
 * NUL-terminated and NUL-padded. */
#define HPCAP_NAME_LEN 32
#define HPCAP_LINGER_DEFAULT_MS 30000u  /* linger_ms = 0 */
#define HPCAP_LINGER_MAX_MS 3600000u    /* one hour */
#define HPCAP_ATTACH_RESUMED (1u << 0)  /* hpcap_attach_named.result */

/* hpcap_stats.nic_valid: which counters read from the NIC are real. A NIC
 * without such a counter reports it as 0 with its bit clear: unknown. */
#define HPCAP_NIC_RECEIVED (1u << 0)
#define HPCAP_NIC_MISSED   (1u << 1)

/* hpcap_info.promisc: what the NIC receives, as the driver achieved it. */
#define HPCAP_PROMISC_UNKNOWN   0u /* not reported (no NIC, not known yet) */
#define HPCAP_PROMISC_ALL       1u /* every frame on the wire */
#define HPCAP_PROMISC_MULTICAST 2u /* own unicast, all multicast, broadcast (82576 VF) */
#define HPCAP_PROMISC_ACKED     3u /* VF: the PF acknowledged the request (granted
                                    * only to a trusted VF; Linux's PF acknowledges
                                    * an untrusted VF too without granting) */
#define HPCAP_PROMISC_REFUSED   4u /* VF: the PF refused: own MAC, broadcast and
                                    * the VF's multicast groups only */

/* HPCAP_IOC_INFO: what the device is and how its stream is laid out. */
struct hpcap_info {
	__u32 abi_version;   /* HPCAP_ABI_VERSION */
	__u32 format;        /* HPCAP_FORMAT_* */
	__u64 buffer_size;   /* bytes; a multiple of block_size */
	__u64 block_size;    /* bytes; a power of two, 64 KiB .. 256 MiB */
	__u32 snaplen;       /* 0 = whole frames */
	__u32 nic;           /* HPCAP_NIC_* */
	__u32 ring_size;     /* RX descriptors */
	__u32 consumers;     /* capture threads (ring segments) */
	__u32 link_up;       /* 1 when the NIC reports link */
	__u32 link_mbps;     /* link speed, 0 if unknown */
	__u32 listeners;     /* attached listeners */
	__u32 index;         /* N of /dev/hpcapN */
	char name[16];       /* "hpcapN", NUL-terminated */
	char bus_addr[32];   /* PCI address "0000:00:02.0" or the source path */
	__u64 commit;        /* stream offset of the end of published data */
	__u32 promisc;       /* HPCAP_PROMISC_*: what the NIC receives */
	__u32 rx_desc_bytes; /* bytes of one RX descriptor (16 or 32), 0 = not reported */
	__u64 reserved[3];
};

/* HPCAP_IOC_ATTACH: choose the mode of this file's listener. Re-attaches
 * at the newest block boundary; start_offset returns the new cursor. */
struct hpcap_attach {
	__u32 mode;          /* in: HPCAP_MODE_* */
	__u32 flags;         /* in: 0 */
	__u64 start_offset;  /* out: stream offset of the cursor */
};

/* HPCAP_IOC_ATTACH_NAMED: attach this file as the named blocking listener
 * `name`, or take over the lingering listener of that name at its cursor
 * (the first byte its previous owner had not acknowledged). Closing the file
 * without HPCAP_IOC_DETACH leaves the listener lingering for linger_ms.
 * Errors: EPERM (the file may not block), EINVAL (bad name, mode, flags,
 * reserved or linger_ms), EEXIST (a listener that is not killed has the
 * name), EBUSY (no slot), EPIPE (this file's listener was killed). */
struct hpcap_attach_named {
	char name[HPCAP_NAME_LEN]; /* in */
	__u32 mode;          /* in: HPCAP_MODE_BLOCKING */
	__u32 linger_ms;     /* in: 0 = HPCAP_LINGER_DEFAULT_MS, at most HPCAP_LINGER_MAX_MS */
	__u32 flags;         /* in: 0 */
	__u32 result;        /* out: HPCAP_ATTACH_RESUMED */
	__u64 start_offset;  /* out: stream offset of the cursor */
	__u64 reserved;      /* in: 0 */
};

/* HPCAP_IOC_WAIT: acknowledge consumed bytes, then wait for data. */
#define HPCAP_WAIT_OVERRUN (1u << 0) /* lossy listener was overrun; see lost_* */
#define HPCAP_WAIT_HUP (1u << 1)     /* device gone or listener killed: no more data */
#define HPCAP_WAIT_TIMEOUT (1u << 2) /* timeout expired before min_bytes */
struct hpcap_wait {
	__u64 ack_bytes;     /* in: bytes consumed since the cursor (advance it) */
	__u64 min_bytes;     /* in: wait until this many bytes are readable (0: don't wait) */
	__u64 timeout_ns;    /* in: longest wait; 0 = poll, ~0 = no limit */
	__u64 read_offset;   /* out: the cursor (stream offset) after the ack */
	__u64 available;     /* out: published bytes from read_offset on */
	__u64 lost_bytes;    /* out: bytes skipped by an overrun during this call */
	__u64 lost_blocks;   /* out: blocks touched by that skip */
	__u32 flags;         /* out: HPCAP_WAIT_* */
	__u32 reserved;
};

/* Capture counters of a device; every frame the driver sees lands in exactly
 * one of stored, filtered or dropped_*: frames_seen = frames_stored +
 * filtered + dropped_ring + dropped_no_space + dropped_lingering +
 * dropped_writer + dropped_no_listener + dropped_stop. nic_* are the NIC's
 * own counters (see nic_valid). */
struct hpcap_counters {
	__u64 frames_seen;
	__u64 bytes_seen;
	__u64 frames_stored;
	__u64 bytes_stored;          /* captured bytes, without record headers */
	__u64 nic_missed;            /* NIC dropped: no descriptor/FIFO space (not seen) */
	__u64 dropped_ring;
	__u64 dropped_no_space;      /* buffer full: blocking listeners behind */
	__u64 bytes_no_space;
	__u64 filtered;              /* rejected by the BPF filter */
	__u64 bytes_filtered;
	__u64 truncated_by_snaplen;  /* stored, but cut to snaplen */
	__u64 bytes_truncated;
	__u64 dropped_writer;        /* no record can hold the frame */
	__u64 nic_received;          /* NIC's good-packets counter */
	__u64 dropped_no_listener;   /* received while no listener was attached */
	__u64 dropped_lingering;     /* buffer full: only lingering listeners behind */
	__u64 dropped_stop;          /* left completed in the ring when capture stopped */
	__u64 bytes_expired;         /* stream bytes lingering listeners held unread at expiry */
};

/* One listener as HPCAP_IOC_STATS reports it. */
struct hpcap_listener {
	__u32 id;            /* generation << 16 | slot; HPCAP_IOC_KILL_LISTENER takes it */
	__u32 mode;          /* HPCAP_MODE_* */
	__u32 pid;           /* process that attached it */
	__u32 flags;         /* HPCAP_LISTENER_* */
	__u64 cursor;        /* stream offset */
	__u64 lag;           /* commit - cursor */
	__u64 lost_bytes;    /* total skipped by overruns (lossy) */
	__u64 lost_blocks;   /* blocks touched by those overruns */
	char name[HPCAP_NAME_LEN]; /* with HPCAP_LISTENER_NAMED, else zero */
	__u32 linger_ms;     /* linger time of a named listener */
	__u32 linger_left_ms; /* with HPCAP_LISTENER_LINGERING: ms until freed */
};

/* HPCAP_IOC_STATS. */
struct hpcap_stats {
	struct hpcap_counters counters;
	__u64 commit;                 /* stream offset of the end of published data */
	__u64 free_bytes;             /* room before the slowest blocking listener */
	__u64 uptime_ns;              /* since the device was bound */
	__u32 nlisteners;             /* valid entries in listener[] */
	__u32 self_id;                /* this file's listener id, ~0 if detached */
	__u32 nic_valid;              /* HPCAP_NIC_* bits: real NIC counters */
	__u32 nic_resets;             /* NIC resets under the capture: gaps in the
	                               * stream (block header flag GAP) */
	struct hpcap_listener listener[HPCAP_MAX_LISTENERS];
};

/* HPCAP_IOC_SET_CONFIG (CAP_NET_ADMIN). Fields whose bit is set in `set`
 * change. Format and block_size change only while no listener is attached
 * (EBUSY otherwise); the stream then restarts on a block boundary of the
 * new layout. */
#define HPCAP_CONFIG_SNAPLEN (1u << 0)
#define HPCAP_CONFIG_FORMAT (1u << 1)
#define HPCAP_CONFIG_BLOCK_SIZE (1u << 2)
struct hpcap_config {
	__u32 set;
	__u32 snaplen;       /* 0 = whole frames; otherwise >= 14 */
	__u32 format;        /* HPCAP_FORMAT_* */
	__u32 reserved;
	__u64 block_size;    /* power of two, 64 KiB .. 256 MiB, divides buffer_size */
};

/* HPCAP_IOC_SET_FILTER (CAP_NET_ADMIN): classic BPF program as produced by
 * libpcap (pcap_compile) / `tcpdump -dd`; len = 0 removes the filter. The
 * driver verifies it (forward jumps only, valid loads, ends in RET, at most
 * 4096 instructions) and answers EINVAL otherwise. */
struct hpcap_filter {
	__u32 len;           /* instructions */
	__u32 reserved;
	__u64 insns;         /* user pointer to struct sock_filter[len] */
};

#define HPCAP_IOC_INFO _IOR(HPCAP_IOC_MAGIC, 1, struct hpcap_info)
#define HPCAP_IOC_ATTACH _IOWR(HPCAP_IOC_MAGIC, 2, struct hpcap_attach)
#define HPCAP_IOC_DETACH _IO(HPCAP_IOC_MAGIC, 3)
#define HPCAP_IOC_WAIT _IOWR(HPCAP_IOC_MAGIC, 4, struct hpcap_wait)
#define HPCAP_IOC_STATS _IOR(HPCAP_IOC_MAGIC, 5, struct hpcap_stats)
#define HPCAP_IOC_SET_CONFIG _IOW(HPCAP_IOC_MAGIC, 6, struct hpcap_config)
#define HPCAP_IOC_SET_FILTER _IOW(HPCAP_IOC_MAGIC, 7, struct hpcap_filter)
#define HPCAP_IOC_KILL_LISTENER _IOW(HPCAP_IOC_MAGIC, 8, __u32)
#define HPCAP_IOC_ATTACH_NAMED _IOWR(HPCAP_IOC_MAGIC, 9, struct hpcap_attach_named)

#endif /* _UAPI_HPCAP_H */
