// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The `/dev/hpcapN` ioctl ABI, mirroring `include/hpcap.h` field for field.
//!
//! The C header is the reference for C users; these definitions are what the
//! module and the Rust tools use. Layouts are pinned below with compile-time
//! size and offset checks, and a userspace test compares them with bindgen's
//! reading of the header. Every structure is made of naturally aligned
//! `u32`/`u64` fields with explicit reserved fields, so there are no padding
//! bytes that could leak kernel memory.

use core::mem::{offset_of, size_of};

/// ABI version reported in [`Info::abi_version`].
pub const ABI_VERSION: u32 = 4;
/// ioctl "type" byte of every hpcap command.
pub const IOC_MAGIC: u32 = b'h' as u32;
/// Listener slots per device (the C header's `HPCAP_MAX_LISTENERS`).
pub const MAX_LISTENERS: usize = 16;

/// Stream format: native pcapng blocks.
pub const FORMAT_PCAPNG: u32 = 0;
/// Stream format: HPCAP RAW records.
pub const FORMAT_RAW: u32 = 1;

/// NIC backend: Intel 82576 PF.
pub const NIC_IGB: u32 = 0;
/// NIC backend: Intel 82576 VF.
pub const NIC_IGBVF: u32 = 1;
/// NIC backend: Intel XL710 PF.
// Not every backend is in every build.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub const NIC_I40E: u32 = 2;
/// NIC backend: Intel XL710/E810 VF.
// Not every backend is in every build.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub const NIC_IAVF: u32 = 3;
/// NIC backend: Intel 82599 PF.
// Not every backend is in every build.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub const NIC_IXGBE: u32 = 4;
/// NIC backend: Intel 82599 VF.
pub const NIC_IXGBEVF: u32 = 5;
/// Software source (`hpcap-sim`), no NIC.
// Not every backend is in every build.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub const NIC_SOFT: u32 = 15;

/// [`Info::promisc`]: not reported (no NIC, or not known yet).
pub const PROMISC_UNKNOWN: u32 = 0;
/// [`Info::promisc`]: the NIC is promiscuous: it receives every frame on
/// the wire (unicast to any address, multicast, broadcast).
pub const PROMISC_ALL: u32 = 1;
/// [`Info::promisc`]: multicast promiscuous only: unicast frames to this
/// function's MAC, every multicast and broadcast frame (an 82576 VF, which
/// cannot be unicast promiscuous).
pub const PROMISC_MULTICAST: u32 = 2;
/// [`Info::promisc`]: a VF whose PF acknowledged the request for unicast
/// and multicast promiscuous mode. A PF grants it only to a VF the host
/// trusts; Linux's i40e acknowledges an untrusted VF's request too without
/// granting it, so the VF cannot tell.
pub const PROMISC_ACKED: u32 = 3;
/// [`Info::promisc`]: the PF refused promiscuous mode: only frames to this
/// VF's MAC, broadcast and the VF's multicast groups are received.
pub const PROMISC_REFUSED: u32 = 4;

/// Listener mode: holds the producer back, never loses data.
pub const MODE_BLOCKING: u32 = 0;
/// Listener mode: never holds the producer back, skips when overrun.
pub const MODE_LOSSY: u32 = 1;

/// [`Listener::flags`]: an administrator killed it; it holds nobody back
/// and its owner gets end-of-stream.
pub const LISTENER_KILLED: u32 = 1 << 0;
/// [`Listener::flags`]: it has a name ([`Listener::name`]).
pub const LISTENER_NAMED: u32 = 1 << 1;
/// [`Listener::flags`]: its owner went away without detaching; it still
/// holds the producer back and waits [`Listener::linger_left_ms`] more for
/// an attach by its name.
pub const LISTENER_LINGERING: u32 = 1 << 2;

/// Bytes of a listener name field, NUL included.
pub const NAME_LEN: usize = super::listener::NAME_MAX + 1;
/// Linger time of a named listener when [`AttachNamed::linger_ms`] is 0.
pub const LINGER_DEFAULT_MS: u32 = 30_000;
/// Longest linger time a named listener may ask for (one hour).
pub const LINGER_MAX_MS: u32 = 3_600_000;
/// [`AttachNamed::result`]: a lingering listener of that name was taken
/// over; the cursor is where it had stopped.
pub const ATTACH_RESUMED: u32 = 1 << 0;

/// [`Wait::flags`]: the lossy listener was overrun; see `lost_*`.
pub const WAIT_OVERRUN: u32 = 1 << 0;
/// [`Wait::flags`]: device gone or listener killed; no more data will come.
pub const WAIT_HUP: u32 = 1 << 1;
/// [`Wait::flags`]: the timeout expired before `min_bytes` were available.
pub const WAIT_TIMEOUT: u32 = 1 << 2;

/// [`Config::set`]: change the snaplen.
pub const CONFIG_SNAPLEN: u32 = 1 << 0;
/// [`Config::set`]: change the stream format (only while no listener is
/// attached: `EBUSY` otherwise).
pub const CONFIG_FORMAT: u32 = 1 << 1;
/// [`Config::set`]: change the block size (only while no listener is
/// attached: `EBUSY` otherwise).
pub const CONFIG_BLOCK_SIZE: u32 = 1 << 2;

/// `HPCAP_IOC_INFO`: what the device is and how its stream is laid out.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// [`ABI_VERSION`].
    pub abi_version: u32,
    /// `FORMAT_*`.
    pub format: u32,
    /// Buffer size in bytes, a multiple of `block_size`.
    pub buffer_size: u64,
    /// Block size in bytes, a power of two.
    pub block_size: u64,
    /// Snapshot length, 0 = whole frames.
    pub snaplen: u32,
    /// `NIC_*`.
    pub nic: u32,
    /// RX descriptors.
    pub ring_size: u32,
    /// Capture threads (ring segments).
    pub consumers: u32,
    /// 1 when the NIC reports link.
    pub link_up: u32,
    /// Link speed in Mb/s, 0 if unknown.
    pub link_mbps: u32,
    /// Attached listeners.
    pub listeners: u32,
    /// N of `/dev/hpcapN`.
    pub index: u32,
    /// `hpcapN`, NUL-terminated.
    pub name: [u8; 16],
    /// PCI address (`0000:00:02.0`) or the software source's path, NUL-terminated.
    pub bus_addr: [u8; 32],
    /// Stream offset of the end of published data.
    pub commit: u64,
    /// What the NIC receives: `PROMISC_*` (refreshed every 100 ms).
    pub promisc: u32,
    /// Bytes of one RX descriptor the NIC writes (16 or 32); 0 = not
    /// reported (a software source, or a kernel older than the field).
    pub rx_desc_bytes: u32,
    /// Zero.
    pub reserved: [u64; 3],
}

/// `HPCAP_IOC_ATTACH`: choose this file's listener mode.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attach {
    /// In: `MODE_*`.
    pub mode: u32,
    /// In: zero.
    pub flags: u32,
    /// Out: the cursor's stream offset (a block boundary).
    pub start_offset: u64,
}

/// `HPCAP_IOC_ATTACH_NAMED`: attach this file as a named blocking
/// listener, or take over a lingering one of that name.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachNamed {
    /// In: the name, NUL-terminated and NUL-padded.
    pub name: [u8; NAME_LEN],
    /// In: [`MODE_BLOCKING`] (the only mode a named listener has).
    pub mode: u32,
    /// In: how long the listener lingers after its file is closed without
    /// `HPCAP_IOC_DETACH` (ms; 0 = [`LINGER_DEFAULT_MS`]; at most
    /// [`LINGER_MAX_MS`]).
    pub linger_ms: u32,
    /// In: zero.
    pub flags: u32,
    /// Out: [`ATTACH_RESUMED`] if a lingering listener was taken over.
    pub result: u32,
    /// Out: the cursor's stream offset.
    pub start_offset: u64,
    /// Zero.
    pub reserved: u64,
}

/// `HPCAP_IOC_WAIT`: acknowledge consumed bytes, then wait for data.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wait {
    /// In: bytes consumed since the cursor.
    pub ack_bytes: u64,
    /// In: wait until this many bytes are readable (0: do not wait).
    pub min_bytes: u64,
    /// In: longest wait in ns; 0 = poll, `u64::MAX` = no limit.
    pub timeout_ns: u64,
    /// Out: the cursor after the ack.
    pub read_offset: u64,
    /// Out: published bytes from `read_offset` on.
    pub available: u64,
    /// Out: bytes skipped by an overrun during this call.
    pub lost_bytes: u64,
    /// Out: blocks touched by that skip.
    pub lost_blocks: u64,
    /// Out: `WAIT_*`.
    pub flags: u32,
    /// Zero.
    pub reserved: u32,
}

/// Capture counters (`struct hpcap_counters`): the core's accounting struct.
pub type Counters = super::stats::CaptureStats;

/// One listener in [`Stats`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// Slot id.
    pub id: u32,
    /// `MODE_*`.
    pub mode: u32,
    /// Process that attached it.
    pub pid: u32,
    /// `LISTENER_*` bits.
    pub flags: u32,
    /// Stream offset of its cursor.
    pub cursor: u64,
    /// `commit - cursor`.
    pub lag: u64,
    /// Total bytes skipped by overruns.
    pub lost_bytes: u64,
    /// Overrun events (each skipped one or more blocks).
    pub lost_blocks: u64,
    /// Its name (with [`LISTENER_NAMED`]), NUL-padded; zero otherwise.
    pub name: [u8; NAME_LEN],
    /// Linger time of a named listener (ms).
    pub linger_ms: u32,
    /// With [`LISTENER_LINGERING`]: ms until it is freed (0 otherwise).
    pub linger_left_ms: u32,
}

/// `HPCAP_IOC_STATS`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Device counters.
    pub counters: Counters,
    /// Stream offset of the end of published data.
    pub commit: u64,
    /// Room before the slowest blocking listener.
    pub free_bytes: u64,
    /// Nanoseconds since the device was bound.
    pub uptime_ns: u64,
    /// Valid entries in `listener`.
    pub nlisteners: u32,
    /// This file's listener id, `u32::MAX` if detached.
    pub self_id: u32,
    /// Which NIC-read counters are real (`stats::NIC_*` bits); the others
    /// read 0 and must be shown as unavailable.
    pub nic_valid: u32,
    /// Times the NIC was reset under the capture (e.g. an XL710 VF reset by
    /// its PF): each is a gap in the stream, during which frames were not
    /// received and no counter has them; the next block header carries
    /// `pcapng::BH_FLAG_GAP`.
    pub nic_resets: u32,
    /// Attached listeners.
    pub listener: [Listener; MAX_LISTENERS],
}

/// `HPCAP_IOC_SET_CONFIG`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Config {
    /// `CONFIG_*` bits of the fields to change.
    pub set: u32,
    /// Snapshot length, 0 = whole frames, else at least 14.
    pub snaplen: u32,
    /// `FORMAT_*`.
    pub format: u32,
    /// Zero.
    pub reserved: u32,
    /// Block size: power of two, 64 KiB..256 MiB, divides the buffer size.
    pub block_size: u64,
}

/// `HPCAP_IOC_SET_FILTER`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Instructions; 0 removes the filter.
    pub len: u32,
    /// Zero.
    pub reserved: u32,
    /// User pointer to `struct sock_filter[len]`.
    pub insns: u64,
}

impl AttachNamed {
    /// All zero.
    pub const ZERO: Self = Self {
        name: [0; NAME_LEN],
        mode: 0,
        linger_ms: 0,
        flags: 0,
        result: 0,
        start_offset: 0,
        reserved: 0,
    };
}

impl Default for AttachNamed {
    fn default() -> Self {
        Self::ZERO
    }
}

impl Listener {
    /// All zero.
    pub const ZERO: Self = Self {
        id: 0,
        mode: 0,
        pid: 0,
        flags: 0,
        cursor: 0,
        lag: 0,
        lost_bytes: 0,
        lost_blocks: 0,
        name: [0; NAME_LEN],
        linger_ms: 0,
        linger_left_ms: 0,
    };
}

impl Default for Listener {
    fn default() -> Self {
        Self::ZERO
    }
}

impl Info {
    /// All zero.
    pub const ZERO: Self = Self {
        abi_version: 0,
        format: 0,
        buffer_size: 0,
        block_size: 0,
        snaplen: 0,
        nic: 0,
        ring_size: 0,
        consumers: 0,
        link_up: 0,
        link_mbps: 0,
        listeners: 0,
        index: 0,
        name: [0; 16],
        bus_addr: [0; 32],
        commit: 0,
        promisc: PROMISC_UNKNOWN,
        rx_desc_bytes: 0,
        reserved: [0; 3],
    };
}

impl Stats {
    /// All zero, no listener.
    pub const ZERO: Self = Self {
        counters: Counters::ZERO,
        commit: 0,
        free_bytes: 0,
        uptime_ns: 0,
        nlisteners: 0,
        self_id: u32::MAX,
        nic_valid: 0,
        nic_resets: 0,
        listener: [Listener::ZERO; MAX_LISTENERS],
    };
}

/// Copies `s` into a NUL-terminated fixed field, truncating if needed.
pub fn set_cstr(field: &mut [u8], s: &[u8]) {
    field.fill(0);
    let n = s.len().min(field.len().saturating_sub(1));
    if let (Some(dst), Some(src)) = (field.get_mut(..n), s.get(..n)) {
        dst.copy_from_slice(src);
    }
}

/// The bytes of a NUL-terminated fixed field, up to the NUL.
pub fn get_cstr(field: &[u8]) -> &[u8] {
    let n = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field.get(..n).unwrap_or(field)
}

// ioctl command numbers, encoded as Linux's generic _IOC() does on x86, arm64
// and riscv: dir << 30 | size << 16 | type << 8 | nr.
const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    // CAST: every ABI struct is far below the 14-bit size limit (asserted below).
    (dir << 30) | ((size as u32) << 16) | (IOC_MAGIC << 8) | nr
}

/// `HPCAP_IOC_INFO`: `_IOR('h', 1, struct hpcap_info)`.
pub const IOC_INFO: u32 = ioc(IOC_READ, 1, size_of::<Info>());
/// `HPCAP_IOC_ATTACH`: `_IOWR('h', 2, struct hpcap_attach)`.
pub const IOC_ATTACH: u32 = ioc(IOC_READ | IOC_WRITE, 2, size_of::<Attach>());
/// `HPCAP_IOC_DETACH`: `_IO('h', 3)`.
pub const IOC_DETACH: u32 = ioc(IOC_NONE, 3, 0);
/// `HPCAP_IOC_WAIT`: `_IOWR('h', 4, struct hpcap_wait)`.
pub const IOC_WAIT: u32 = ioc(IOC_READ | IOC_WRITE, 4, size_of::<Wait>());
/// `HPCAP_IOC_STATS`: `_IOR('h', 5, struct hpcap_stats)`.
pub const IOC_STATS: u32 = ioc(IOC_READ, 5, size_of::<Stats>());
/// `HPCAP_IOC_SET_CONFIG`: `_IOW('h', 6, struct hpcap_config)`.
pub const IOC_SET_CONFIG: u32 = ioc(IOC_WRITE, 6, size_of::<Config>());
/// `HPCAP_IOC_SET_FILTER`: `_IOW('h', 7, struct hpcap_filter)`.
pub const IOC_SET_FILTER: u32 = ioc(IOC_WRITE, 7, size_of::<Filter>());
/// `HPCAP_IOC_KILL_LISTENER`: `_IOW('h', 8, __u32)`.
pub const IOC_KILL_LISTENER: u32 = ioc(IOC_WRITE, 8, size_of::<u32>());
/// `HPCAP_IOC_ATTACH_NAMED`: `_IOWR('h', 9, struct hpcap_attach_named)`.
pub const IOC_ATTACH_NAMED: u32 = ioc(IOC_READ | IOC_WRITE, 9, size_of::<AttachNamed>());

// Layouts, pinned (the C header must agree; see the userspace ABI test).
const _: () = {
    assert!(size_of::<Info>() == 144);
    assert!(offset_of!(Info, buffer_size) == 8);
    assert!(offset_of!(Info, name) == 56);
    assert!(offset_of!(Info, bus_addr) == 72);
    assert!(offset_of!(Info, commit) == 104);
    assert!(size_of::<Attach>() == 16);
    assert!(size_of::<Wait>() == 64);
    assert!(offset_of!(Wait, flags) == 56);
    assert!(size_of::<AttachNamed>() == 64);
    assert!(offset_of!(AttachNamed, mode) == 32);
    assert!(offset_of!(AttachNamed, start_offset) == 48);
    assert!(size_of::<Counters>() == 144);
    assert!(offset_of!(Info, promisc) == 112);
    assert!(size_of::<Listener>() == 88);
    assert!(offset_of!(Listener, name) == 48);
    assert!(offset_of!(Listener, linger_left_ms) == 84);
    assert!(size_of::<Stats>() == 144 + 40 + 16 * 88);
    assert!(offset_of!(Stats, nic_valid) == 176);
    assert!(offset_of!(Stats, listener) == 184);
    assert!(size_of::<Config>() == 24);
    assert!(size_of::<Filter>() == 16);
    assert!(size_of::<Stats>() < (1 << 14));
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_encoding() {
        // Values computed by hand from <asm-generic/ioctl.h>.
        assert_eq!(IOC_DETACH, 0x6803);
        assert_eq!(IOC_INFO, 0x8090_6801);
        assert_eq!(IOC_WAIT, 0xC040_6804);
        assert_eq!(IOC_KILL_LISTENER, 0x4004_6808);
        assert_eq!(IOC_ATTACH_NAMED, 0xC040_6809);
        assert_eq!(IOC_STATS, 0x8638_6805);
    }

    #[test]
    fn cstr_fields_truncate_and_terminate() {
        let mut f = [0xFFu8; 8];
        set_cstr(&mut f, b"hpcap12345");
        assert_eq!(&f, b"hpcap12\0");
        assert_eq!(get_cstr(&f), b"hpcap12");
        set_cstr(&mut f, b"ab");
        assert_eq!(get_cstr(&f), b"ab");
        assert_eq!(f[2..], [0; 6]);
    }
}
