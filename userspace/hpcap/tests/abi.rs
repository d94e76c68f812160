// SPDX-License-Identifier: MIT
//! The ABI as bindgen reads `include/hpcap.h` must equal the core's mirror
//! (`hpcap_core::abi`) byte for byte: every struct's size and alignment,
//! every field's offset, every constant, and every ioctl number as nix's
//! `request_code_*!` macros encode it from the bindgen structs.

use std::mem::{align_of, offset_of, size_of};

use hpcap::core::abi;
use hpcap::sys;

macro_rules! same_layout {
    ($c:ty, $r:ty, [$($f:ident),* $(,)?]) => {{
        assert_eq!(size_of::<$c>(), size_of::<$r>(), "size of {}", stringify!($c));
        assert_eq!(align_of::<$c>(), align_of::<$r>(), "align of {}", stringify!($c));
        $(
            assert_eq!(
                offset_of!($c, $f),
                offset_of!($r, $f),
                "offset of {}.{}", stringify!($c), stringify!($f)
            );
        )*
    }};
}

#[test]
fn struct_layouts_match_the_header() {
    same_layout!(
        sys::hpcap_info,
        abi::Info,
        [
            abi_version,
            format,
            buffer_size,
            block_size,
            snaplen,
            nic,
            ring_size,
            consumers,
            link_up,
            link_mbps,
            listeners,
            index,
            name,
            bus_addr,
            commit,
            promisc,
            rx_desc_bytes,
            reserved
        ]
    );
    same_layout!(sys::hpcap_attach, abi::Attach, [mode, flags, start_offset]);
    same_layout!(
        sys::hpcap_attach_named,
        abi::AttachNamed,
        [name, mode, linger_ms, flags, result, start_offset, reserved]
    );
    same_layout!(
        sys::hpcap_wait,
        abi::Wait,
        [
            ack_bytes,
            min_bytes,
            timeout_ns,
            read_offset,
            available,
            lost_bytes,
            lost_blocks,
            flags,
            reserved
        ]
    );
    same_layout!(
        sys::hpcap_counters,
        abi::Counters,
        [
            frames_seen,
            bytes_seen,
            frames_stored,
            bytes_stored,
            nic_missed,
            dropped_ring,
            dropped_no_space,
            bytes_no_space,
            filtered,
            bytes_filtered,
            truncated_by_snaplen,
            bytes_truncated,
            dropped_writer,
            nic_received,
            dropped_no_listener,
            dropped_lingering,
            dropped_stop,
            bytes_expired
        ]
    );
    same_layout!(
        sys::hpcap_listener,
        abi::Listener,
        [
            id,
            mode,
            pid,
            flags,
            cursor,
            lag,
            lost_bytes,
            lost_blocks,
            name,
            linger_ms,
            linger_left_ms
        ]
    );
    same_layout!(
        sys::hpcap_stats,
        abi::Stats,
        [
            counters, commit, free_bytes, uptime_ns, nlisteners, self_id, nic_valid, nic_resets,
            listener
        ]
    );
    same_layout!(
        sys::hpcap_config,
        abi::Config,
        [set, snaplen, format, reserved, block_size]
    );
    same_layout!(sys::hpcap_filter, abi::Filter, [len, reserved, insns]);
    // The fixed arrays have the same lengths.
    let i = sys::hpcap_info::default();
    assert_eq!(i.name.len(), abi::Info::ZERO.name.len());
    assert_eq!(i.bus_addr.len(), abi::Info::ZERO.bus_addr.len());
    assert_eq!(i.reserved.len(), abi::Info::ZERO.reserved.len());
    assert_eq!(
        sys::hpcap_stats::default().listener.len(),
        abi::MAX_LISTENERS
    );
    assert_eq!(
        sys::hpcap_attach_named::default().name.len(),
        abi::AttachNamed::ZERO.name.len()
    );
    assert_eq!(
        sys::hpcap_listener::default().name.len(),
        abi::Listener::ZERO.name.len()
    );
}

#[test]
fn constants_match_the_header() {
    assert_eq!(sys::HPCAP_ABI_VERSION, abi::ABI_VERSION);
    assert_eq!(u32::from(sys::HPCAP_IOC_MAGIC), abi::IOC_MAGIC);
    assert_eq!(sys::HPCAP_MAX_LISTENERS as usize, abi::MAX_LISTENERS);
    assert_eq!(sys::HPCAP_FORMAT_PCAPNG, abi::FORMAT_PCAPNG);
    assert_eq!(sys::HPCAP_FORMAT_RAW, abi::FORMAT_RAW);
    assert_eq!(sys::HPCAP_NIC_IGB, abi::NIC_IGB);
    assert_eq!(sys::HPCAP_NIC_IGBVF, abi::NIC_IGBVF);
    assert_eq!(sys::HPCAP_NIC_I40E, abi::NIC_I40E);
    assert_eq!(sys::HPCAP_NIC_IAVF, abi::NIC_IAVF);
    assert_eq!(sys::HPCAP_NIC_IXGBE, abi::NIC_IXGBE);
    assert_eq!(sys::HPCAP_NIC_IXGBEVF, abi::NIC_IXGBEVF);
    assert_eq!(sys::HPCAP_NIC_SOFT, abi::NIC_SOFT);
    assert_eq!(sys::HPCAP_MODE_BLOCKING, abi::MODE_BLOCKING);
    assert_eq!(sys::HPCAP_MODE_LOSSY, abi::MODE_LOSSY);
    assert_eq!(sys::HPCAP_LISTENER_KILLED, abi::LISTENER_KILLED);
    assert_eq!(sys::HPCAP_LISTENER_NAMED, abi::LISTENER_NAMED);
    assert_eq!(sys::HPCAP_LISTENER_LINGERING, abi::LISTENER_LINGERING);
    assert_eq!(sys::HPCAP_NAME_LEN as usize, abi::NAME_LEN);
    assert_eq!(sys::HPCAP_LINGER_DEFAULT_MS, abi::LINGER_DEFAULT_MS);
    assert_eq!(sys::HPCAP_LINGER_MAX_MS, abi::LINGER_MAX_MS);
    assert_eq!(sys::HPCAP_ATTACH_RESUMED, abi::ATTACH_RESUMED);
    assert_eq!(sys::HPCAP_NIC_RECEIVED, hpcap::core::stats::NIC_RECEIVED);
    assert_eq!(sys::HPCAP_NIC_MISSED, hpcap::core::stats::NIC_MISSED);
    assert_eq!(sys::HPCAP_WAIT_OVERRUN, abi::WAIT_OVERRUN);
    assert_eq!(sys::HPCAP_WAIT_HUP, abi::WAIT_HUP);
    assert_eq!(sys::HPCAP_WAIT_TIMEOUT, abi::WAIT_TIMEOUT);
    assert_eq!(sys::HPCAP_CONFIG_SNAPLEN, abi::CONFIG_SNAPLEN);
    assert_eq!(sys::HPCAP_CONFIG_FORMAT, abi::CONFIG_FORMAT);
    assert_eq!(sys::HPCAP_CONFIG_BLOCK_SIZE, abi::CONFIG_BLOCK_SIZE);
}

#[test]
fn ioctl_numbers_match_nix() {
    use nix::{request_code_none, request_code_read, request_code_readwrite, request_code_write};
    let m = sys::HPCAP_IOC_MAGIC;
    // ioctl_num_type is c_ulong or c_int depending on the libc.
    #[allow(clippy::unnecessary_cast)]
    let n = |v: nix::sys::ioctl::ioctl_num_type| v as u64;
    assert_eq!(
        n(request_code_read!(m, 1, size_of::<sys::hpcap_info>())),
        u64::from(abi::IOC_INFO)
    );
    assert_eq!(
        n(request_code_readwrite!(
            m,
            2,
            size_of::<sys::hpcap_attach>()
        )),
        u64::from(abi::IOC_ATTACH)
    );
    assert_eq!(n(request_code_none!(m, 3)), u64::from(abi::IOC_DETACH));
    assert_eq!(
        n(request_code_readwrite!(m, 4, size_of::<sys::hpcap_wait>())),
        u64::from(abi::IOC_WAIT)
    );
    assert_eq!(
        n(request_code_read!(m, 5, size_of::<sys::hpcap_stats>())),
        u64::from(abi::IOC_STATS)
    );
    assert_eq!(
        n(request_code_write!(m, 6, size_of::<sys::hpcap_config>())),
        u64::from(abi::IOC_SET_CONFIG)
    );
    assert_eq!(
        n(request_code_write!(m, 7, size_of::<sys::hpcap_filter>())),
        u64::from(abi::IOC_SET_FILTER)
    );
    assert_eq!(
        n(request_code_write!(m, 8, size_of::<u32>())),
        u64::from(abi::IOC_KILL_LISTENER)
    );
    assert_eq!(
        n(request_code_readwrite!(
            m,
            9,
            size_of::<sys::hpcap_attach_named>()
        )),
        u64::from(abi::IOC_ATTACH_NAMED)
    );
}
