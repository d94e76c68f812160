// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The admin-queue descriptor of the Intel XL710 family (the 32-byte
//! `libie_aq_desc` of Linux's `include/linux/net/intel/libie/adminq.h`):
//! the one layout shared by a PF's admin queue to firmware and a VF's
//! mailbox to its PF, used by the driver's admin-queue transport
//! (`driver/nic/xl710_adminq.rs`) and by the VF model (`tools/model`).
//!
//! A descriptor is 32 little-endian bytes: `flags u16, opcode u16,
//! datalen u16, retval u16, cookie_high u32, cookie_low u32`, then four
//! parameter words; for a command with a buffer ("indirect") the last two
//! are the buffer's bus address, high word first.
//!
//! On a VF, virtchnl messages ride on two opcodes: the VF sends
//! [`opc::SEND_MSG_TO_PF`] with the virtchnl opcode in `cookie_high`; the
//! PF's messages arrive as [`opc::SEND_MSG_TO_VF`] with the virtchnl opcode
//! in `cookie_high` and its status in `cookie_low`.

/// Bytes of one descriptor.
pub const DESC_LEN: usize = 32;

/// Buffers longer than this need [`flag::LB`].
pub const LARGE_BUF: u16 = 512;

/// Descriptor flags (`LIBIE_AQ_FLAG_*`).
pub mod flag {
    /// Descriptor done: the other side has processed it.
    pub const DD: u16 = 1 << 0;
    /// Command completed.
    #[cfg_attr(hpcap_kernel, allow(dead_code))]
    pub const CMP: u16 = 1 << 1;
    /// Command failed; `retval` says why.
    pub const ERR: u16 = 1 << 2;
    /// VF-to-PF message (set by hardware).
    #[cfg_attr(hpcap_kernel, allow(dead_code))]
    pub const VFE: u16 = 1 << 3;
    /// The buffer is larger than [`super::LARGE_BUF`] bytes.
    pub const LB: u16 = 1 << 9;
    /// The buffer is read by the other side (the command sends data).
    pub const RD: u16 = 1 << 10;
    /// The command carries a VF's message (set by hardware).
    #[cfg_attr(hpcap_kernel, allow(dead_code))]
    pub const VFC: u16 = 1 << 11;
    /// The descriptor points at a buffer.
    pub const BUF: u16 = 1 << 12;
    /// Silent: no completion interrupt.
    pub const SI: u16 = 1 << 13;
    /// Interrupt on completion.
    #[cfg_attr(hpcap_kernel, allow(dead_code))]
    pub const EI: u16 = 1 << 14;
    /// Flush: stop processing after an error.
    #[cfg_attr(hpcap_kernel, allow(dead_code))]
    pub const FE: u16 = 1 << 15;
}

/// Admin-queue opcodes used on a VF's mailbox.
pub mod opc {
    /// A virtchnl message from the VF to its PF.
    pub const SEND_MSG_TO_PF: u16 = 0x0801;
    /// A virtchnl message from the PF to the VF.
    pub const SEND_MSG_TO_VF: u16 = 0x0802;
}

/// Admin-queue return codes (`LIBIE_AQ_RC_*`, the `retval` field).
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub mod rc {
    /// Success.
    pub const OK: u16 = 0;
    /// Operation not permitted.
    pub const EPERM: u16 = 1;
    /// No such element.
    pub const ENOENT: u16 = 2;
    /// Bad opcode.
    pub const ESRCH: u16 = 3;
    /// I/O error.
    pub const EIO: u16 = 5;
    /// Invalid argument.
    pub const EINVAL: u16 = 14;
}

/// One admin-queue descriptor, decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    /// `flag::*` bits.
    pub flags: u16,
    /// Command opcode.
    pub opcode: u16,
    /// Bytes of the buffer (sent, or received).
    pub datalen: u16,
    /// Return code (`rc::*`) written back by the other side.
    pub retval: u16,
    /// On a mailbox: the virtchnl opcode.
    pub cookie_high: u32,
    /// On a mailbox: the virtchnl status (as `u32`).
    pub cookie_low: u32,
    /// Command parameter 0.
    pub param0: u32,
    /// Command parameter 1.
    pub param1: u32,
    /// Indirect commands: high 32 bits of the buffer's bus address.
    pub addr_high: u32,
    /// Indirect commands: low 32 bits of the buffer's bus address.
    pub addr_low: u32,
}

/// A virtchnl message the PF wrote into a VF's receive queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PfMessage {
    /// The virtchnl opcode (`virtchnl::op::*`).
    pub opcode: u32,
    /// The virtchnl status (`virtchnl::status::*`).
    pub status: i32,
    /// Bytes of the message in the descriptor's buffer.
    pub len: u16,
}

fn u16_at(b: &[u8; DESC_LEN], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}

fn u32_at(b: &[u8; DESC_LEN], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, c, d, e]) => u32::from_le_bytes([a, c, d, e]),
        _ => 0,
    }
}

impl Desc {
    /// The descriptor as it lies in memory.
    pub fn to_bytes(self) -> [u8; DESC_LEN] {
        let mut b = [0u8; DESC_LEN];
        let fields: [(usize, &[u8]); 10] = [
            (0, &self.flags.to_le_bytes()),
            (2, &self.opcode.to_le_bytes()),
            (4, &self.datalen.to_le_bytes()),
            (6, &self.retval.to_le_bytes()),
            (8, &self.cookie_high.to_le_bytes()),
            (12, &self.cookie_low.to_le_bytes()),
            (16, &self.param0.to_le_bytes()),
            (20, &self.param1.to_le_bytes()),
            (24, &self.addr_high.to_le_bytes()),
            (28, &self.addr_low.to_le_bytes()),
        ];
        for (at, v) in fields {
            if let Some(dst) = b.get_mut(at..at + v.len()) {
                dst.copy_from_slice(v);
            }
        }
        b
    }

    /// Decodes the bytes of a descriptor.
    pub fn from_bytes(b: &[u8; DESC_LEN]) -> Self {
        Self {
            flags: u16_at(b, 0),
            opcode: u16_at(b, 2),
            datalen: u16_at(b, 4),
            retval: u16_at(b, 6),
            cookie_high: u32_at(b, 8),
            cookie_low: u32_at(b, 12),
            param0: u32_at(b, 16),
            param1: u32_at(b, 20),
            addr_high: u32_at(b, 24),
            addr_low: u32_at(b, 28),
        }
    }

    /// The descriptor as four little-endian 64-bit words (how a driver
    /// writes it into DMA memory with whole-word stores).
    pub fn to_words(self) -> [u64; 4] {
        let b = self.to_bytes();
        let mut w = [0u64; 4];
        for (i, w) in w.iter_mut().enumerate() {
            let mut q = [0u8; 8];
            if let Some(src) = b.get(8 * i..8 * i + 8) {
                q.copy_from_slice(src);
            }
            *w = u64::from_le_bytes(q);
        }
        w
    }

    /// Inverse of [`Self::to_words`].
    pub fn from_words(w: &[u64; 4]) -> Self {
        let mut b = [0u8; DESC_LEN];
        for (i, w) in w.iter().enumerate() {
            if let Some(dst) = b.get_mut(8 * i..8 * i + 8) {
                dst.copy_from_slice(&w.to_le_bytes());
            }
        }
        Self::from_bytes(&b)
    }

    /// The bus address of the descriptor's buffer.
    #[cfg_attr(hpcap_kernel, allow(dead_code))]
    pub fn buffer(&self) -> u64 {
        (u64::from(self.addr_high) << 32) | u64::from(self.addr_low)
    }

    /// The same descriptor pointing at a buffer at bus address `addr`.
    pub fn with_buffer(mut self, addr: u64) -> Self {
        // CAST: the two halves of the address (truncation intended).
        self.addr_high = (addr >> 32) as u32;
        self.addr_low = addr as u32;
        self
    }

    /// The other side has processed the descriptor.
    pub fn done(&self) -> bool {
        self.flags & flag::DD != 0
    }

    /// The other side reported an error (`retval` holds the code).
    pub fn failed(&self) -> bool {
        self.flags & flag::ERR != 0
    }

    /// A virtchnl message of `len` bytes for the PF (Linux's
    /// `iavf_aq_send_msg_to_pf`): silent; with a buffer the PF reads; the
    /// caller adds the buffer's address with [`Self::with_buffer`].
    pub fn send_to_pf(opcode: u32, len: u16) -> Self {
        let mut flags = flag::SI;
        if len > 0 {
            flags |= flag::BUF | flag::RD;
            if len > LARGE_BUF {
                flags |= flag::LB;
            }
        }
        Self {
            flags,
            opcode: opc::SEND_MSG_TO_PF,
            datalen: len,
            cookie_high: opcode,
            ..Self::default()
        }
    }

    /// A command for a PF's firmware (Linux's
    /// `i40e_fill_default_direct_cmd_desc`): silent, no buffer yet.
    pub fn command(opcode: u16) -> Self {
        Self {
            flags: flag::SI,
            opcode,
            ..Self::default()
        }
    }

    /// The same command with a `len`-byte buffer that the firmware reads
    /// (`to_firmware`, e.g. a VSI's new properties) or fills (e.g. the
    /// switch configuration); the transport adds the buffer's address.
    pub fn with_buffer_len(mut self, len: u16, to_firmware: bool) -> Self {
        self.flags |= flag::BUF;
        if len > LARGE_BUF {
            self.flags |= flag::LB;
        }
        if to_firmware {
            self.flags |= flag::RD;
        }
        self.datalen = len;
        self
    }

    /// The 16 parameter bytes (descriptor bytes 16..32, where a direct
    /// command's structure lies).
    pub fn params(&self) -> [u8; 16] {
        let b = self.to_bytes();
        let mut p = [0u8; 16];
        if let Some(src) = b.get(16..32) {
            p.copy_from_slice(src);
        }
        p
    }

    /// The same descriptor with parameter bytes `p`.
    pub fn with_params(self, p: &[u8; 16]) -> Self {
        let mut b = self.to_bytes();
        if let Some(dst) = b.get_mut(16..32) {
            dst.copy_from_slice(p);
        }
        Self::from_bytes(&b)
    }

    /// A receive-queue descriptor offering a `size`-byte buffer at `addr`
    /// (Linux's `iavf_alloc_arq_bufs`).
    pub fn receive_buffer(addr: u64, size: u16) -> Self {
        let mut flags = flag::BUF;
        if size > LARGE_BUF {
            flags |= flag::LB;
        }
        Self {
            flags,
            datalen: size,
            ..Self::default()
        }
        .with_buffer(addr)
    }

    /// The PF's message in a completed receive-queue descriptor; `None` if
    /// the descriptor is not done or carries another opcode.
    pub fn pf_message(&self) -> Option<PfMessage> {
        if !self.done() || self.opcode != opc::SEND_MSG_TO_VF {
            return None;
        }
        Some(PfMessage {
            opcode: self.cookie_high,
            // CAST: the status is a C `int` stored in the 32-bit cookie.
            status: self.cookie_low as i32,
            len: self.datalen,
        })
    }

    /// The write-back of a receive-queue descriptor that delivers a PF
    /// message of `len` bytes (what the VF model writes; `len` is at most
    /// the buffer's size, which the caller has checked).
    #[cfg(not(hpcap_kernel))]
    pub fn deliver_pf_message(&self, opcode: u32, status: i32, len: u16) -> Self {
        Self {
            flags: self.flags | flag::DD | flag::CMP,
            opcode: opc::SEND_MSG_TO_VF,
            datalen: len,
            retval: rc::OK,
            cookie_high: opcode,
            // CAST: the status as the C `int` of the cookie.
            cookie_low: status as u32,
            ..*self
        }
    }

    /// The write-back of a send-queue descriptor the other side processed:
    /// done and complete, or failed with `retval` (what the VF model writes).
    #[cfg(not(hpcap_kernel))]
    pub fn complete(&self, retval: u16) -> Self {
        let mut flags = self.flags | flag::DD | flag::CMP;
        if retval != rc::OK {
            flags |= flag::ERR;
        }
        Self {
            flags,
            retval,
            ..*self
        }
    }
}

/// The index after `i` in a queue of `len` descriptors (0 after the last;
/// 0 for an empty queue).
pub fn next_index(i: u32, len: u32) -> u32 {
    match i.checked_add(1) {
        Some(n) if n < len => n,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_desc() -> impl Strategy<Value = Desc> {
        (any::<[u16; 4]>(), any::<[u32; 2]>(), any::<[u32; 4]>()).prop_map(|(h, c, p)| Desc {
            flags: h[0],
            opcode: h[1],
            datalen: h[2],
            retval: h[3],
            cookie_high: c[0],
            cookie_low: c[1],
            param0: p[0],
            param1: p[1],
            addr_high: p[2],
            addr_low: p[3],
        })
    }

    proptest! {
        #[test]
        fn bytes_and_words_round_trip(d in any_desc()) {
            prop_assert_eq!(Desc::from_bytes(&d.to_bytes()), d);
            prop_assert_eq!(Desc::from_words(&d.to_words()), d);
            let w = d.to_words();
            prop_assert_eq!(w[0] & 0xFFFF, u64::from(d.flags));
            prop_assert_eq!(w[3], (u64::from(d.addr_low) << 32) | u64::from(d.addr_high));
        }

        #[test]
        fn buffer_address_round_trips(d in any_desc(), addr: u64) {
            prop_assert_eq!(d.with_buffer(addr).buffer(), addr);
        }
    }

    #[test]
    fn layout_is_the_kernels() {
        let d = Desc::send_to_pf(6, 136).with_buffer(0x1_2345_6780);
        let b = d.to_bytes();
        // flags SI | BUF | RD (0x3400), opcode 0x0801, datalen 136.
        assert_eq!(&b[0..6], &[0x00, 0x34, 0x01, 0x08, 136, 0]);
        assert_eq!(
            &b[8..12],
            &6u32.to_le_bytes(),
            "virtchnl opcode in cookie_high"
        );
        assert_eq!(&b[24..28], &1u32.to_le_bytes(), "addr_high at 24");
        assert_eq!(&b[28..32], &0x2345_6780u32.to_le_bytes(), "addr_low at 28");
        assert_eq!(Desc::send_to_pf(1, 0).flags, flag::SI);
        assert_eq!(Desc::send_to_pf(3, 600).flags & flag::LB, flag::LB);
        let r = Desc::receive_buffer(0x1000, 4096);
        assert_eq!(r.flags, flag::BUF | flag::LB);
        assert_eq!((r.datalen, r.buffer()), (4096, 0x1000));
    }

    #[test]
    fn firmware_commands() {
        let d = Desc::command(0x0200).with_buffer_len(4096, false);
        assert_eq!(d.flags, flag::SI | flag::BUF | flag::LB);
        assert_eq!((d.opcode, d.datalen), (0x0200, 4096));
        let d = Desc::command(0x0211).with_buffer_len(128, true);
        assert_eq!(d.flags, flag::SI | flag::BUF | flag::RD);
        let mut p = [0u8; 16];
        p[0] = 0x12;
        p[15] = 0x34;
        let d = Desc::command(0x0254).with_params(&p);
        assert_eq!(d.params(), p);
        assert_eq!((d.param0 & 0xFF, d.addr_low >> 24), (0x12, 0x34));
    }

    #[test]
    fn pf_messages_decode() {
        let armed = Desc::receive_buffer(0x2000, 4096);
        assert_eq!(armed.pf_message(), None, "not done");
        let wb = armed.deliver_pf_message(17, -5, 16);
        assert_eq!(
            wb.pf_message(),
            Some(PfMessage {
                opcode: 17,
                status: -5,
                len: 16
            })
        );
        assert_eq!(wb.buffer(), 0x2000, "the buffer stays");
        let other = Desc {
            opcode: 0x0001,
            ..wb
        };
        assert_eq!(other.pf_message(), None, "not a mailbox message");
        let sent = Desc::send_to_pf(1, 8);
        assert!(sent.complete(rc::OK).done() && !sent.complete(rc::OK).failed());
        assert!(sent.complete(rc::ESRCH).failed());
    }

    #[test]
    fn indices_wrap() {
        assert_eq!(next_index(0, 32), 1);
        assert_eq!(next_index(31, 32), 0);
        assert_eq!(next_index(0, 0), 0);
        assert_eq!(next_index(u32::MAX, 8), 0);
    }
}
