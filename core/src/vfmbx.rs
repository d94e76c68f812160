// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The PF/VF mailbox messages of Intel's e1000-family SR-IOV NICs: the
//! 82576 (igb/igbvf) and the 82599 (ixgbe/ixgbevf) frame their messages the
//! same way (82576 datasheet 7.8.2.9, 82599 datasheet 7.9.2.2): 16 dwords,
//! word 0 holds the message type in its low 16 bits, 8 bits of extra
//! information in bits 23:16 and the PF's verdict in the top bits.
//!
//! Only the framing and the message types both families share live here;
//! the register handshake (who owns the buffer, request and acknowledge
//! bits) is the same too but sits at other offsets in each VF, and each
//! driver reads its own. The embedded PF of the device model answers with
//! the same constants the kernel backends send.

// The kernel module uses the subset its backends send; the rest is the
// model's (tools/model) and documents the protocol.
#![cfg_attr(hpcap_kernel, allow(dead_code))]

/// Dwords in the mailbox buffer.
pub const WORDS: usize = 16;

/// Word 0: the PF processed the message successfully.
pub const MSGTYPE_ACK: u32 = 0x8000_0000;
/// Word 0: the PF refused the message.
pub const MSGTYPE_NACK: u32 = 0x4000_0000;
/// Word 0: the VF is clear to send (it has completed a reset handshake).
pub const MSGTYPE_CTS: u32 = 0x2000_0000;
/// Word 0: the message type.
pub const MSG_TYPE_MASK: u32 = 0xFFFF;
/// Word 0: message-specific information, bits 23:16.
pub const MSGINFO_SHIFT: u32 = 16;
/// Word 0: mask of the information field.
pub const MSGINFO_MASK: u32 = 0xFF << MSGINFO_SHIFT;

/// Message types common to igb and ixgbe PFs.
pub mod msg {
    /// VF reset handshake; the reply carries the VF's MAC in words 1..2.
    pub const RESET: u32 = 0x01;
    /// Set the VF's unicast MAC address (words 1..2).
    pub const SET_MAC_ADDR: u32 = 0x02;
    /// Multicast hash list: count in MSGINFO, 16-bit hashes from word 1.
    pub const SET_MULTICAST: u32 = 0x03;
    /// VLAN filter: VID in word 1, MSGINFO 1 = add, 0 = remove.
    pub const SET_VLAN: u32 = 0x04;
    /// Long packets: the largest frame (with FCS) in word 1.
    pub const SET_LPE: u32 = 0x05;
}

/// Message types of the ixgbe PF (Linux `ixgbevf/mbx.h`).
pub mod ixgbe {
    /// Additional unicast MAC filters (MSGINFO = index).
    pub const SET_MACVLAN: u32 = 0x06;
    /// Mailbox API negotiation: word 1 is the API.
    pub const API_NEGOTIATE: u32 = 0x08;
    /// Queue configuration: reply words 1..4 (TX queues, RX queues,
    /// transparent VLAN / traffic classes, default queue).
    pub const GET_QUEUES: u32 = 0x09;
    /// RSS redirection table (82599/X540 only).
    pub const GET_RETA: u32 = 0x0a;
    /// RSS key (82599/X540 only).
    pub const GET_RSS_KEY: u32 = 0x0b;
    /// Multicast/promiscuous mode: word 1 is an [`xcast`] mode.
    pub const UPDATE_XCAST_MODE: u32 = 0x0c;
    /// Link state of the VF as the PF set it.
    pub const GET_LINK_STATE: u32 = 0x10;
    /// The PF's own link (API 1.6, E610).
    pub const GET_PF_LINK_STATE: u32 = 0x11;
    /// Feature negotiation (API 1.7).
    pub const FEATURES_NEGOTIATE: u32 = 0x12;
    /// A PF-initiated message (link change, "ping").
    pub const PF_CONTROL_MSG: u32 = 0x0100;
    /// Reply words of RESET: word 3 carries the multicast filter type.
    pub const RESET_REPLY_WORDS: usize = 4;

    /// Mailbox API versions (`enum ixgbe_pfvf_api_rev`).
    pub mod api {
        /// 1.0: Linux/FreeBSD VF drivers.
        pub const V10: u32 = 0;
        /// 2.0: Solaris.
        pub const V20: u32 = 1;
        /// 1.1: GET_QUEUES.
        pub const V11: u32 = 2;
        /// 1.2: RETA, RSS key, xcast modes.
        pub const V12: u32 = 3;
        /// 1.3: promiscuous xcast mode.
        pub const V13: u32 = 4;
        /// 1.4: IPsec offload.
        pub const V14: u32 = 5;
        /// 1.5: ESX mailbox.
        pub const V15: u32 = 6;
        /// 1.6: PF link state.
        pub const V16: u32 = 7;
        /// 1.7: feature negotiation.
        pub const V17: u32 = 8;
    }

    /// Modes of UPDATE_XCAST_MODE (`IXGBEVF_XCAST_MODE_*`).
    pub mod xcast {
        /// Own MAC and broadcast only.
        pub const NONE: u32 = 0;
        /// Plus the multicast groups the VF joined.
        pub const MULTI: u32 = 1;
        /// Plus all multicast.
        pub const ALLMULTI: u32 = 2;
        /// Plus every unicast address (not on an 82599).
        pub const PROMISC: u32 = 3;
    }
}

/// Word 0 of a reply: type of `request`, ACK or NACK, and CTS as a PF that
/// completed the VF's reset handshake adds it.
pub const fn reply_word(request: u32, ok: bool, cts: bool) -> u32 {
    let mut w = request & !(MSGTYPE_ACK | MSGTYPE_NACK | MSGTYPE_CTS);
    w |= if ok { MSGTYPE_ACK } else { MSGTYPE_NACK };
    if cts {
        w |= MSGTYPE_CTS;
    }
    w
}

/// Whether `reply` answers `request` with an ACK (CTS and info bits aside).
pub const fn is_ack_of(request: u32, reply: u32) -> bool {
    reply & MSG_TYPE_MASK == request & MSG_TYPE_MASK
        && reply & MSGTYPE_ACK != 0
        && reply & MSGTYPE_NACK == 0
}

/// A MAC address as two mailbox words (bytes in memory order, the second
/// word's upper half zero).
pub const fn mac_to_words(mac: [u8; 6]) -> [u32; 2] {
    [
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
        u32::from_le_bytes([mac[4], mac[5], 0, 0]),
    ]
}

/// The MAC address in two mailbox words (the inverse of [`mac_to_words`]).
pub const fn mac_from_words(w1: u32, w2: u32) -> [u8; 6] {
    let a = w1.to_le_bytes();
    let b = w2.to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_words() {
        let r = reply_word(msg::SET_LPE, true, true);
        assert_eq!(r, 0xA000_0005);
        assert!(is_ack_of(msg::SET_LPE, r));
        assert!(!is_ack_of(
            msg::SET_LPE,
            reply_word(msg::SET_LPE, false, true)
        ));
        assert!(!is_ack_of(msg::RESET, r));
        // Info bits of the request survive (SET_VLAN's add flag).
        let req = msg::SET_VLAN | 1 << MSGINFO_SHIFT;
        assert_eq!(reply_word(req, true, false), 0x8001_0004);
    }

    #[test]
    fn mac_round_trip() {
        let mac = [0x02, 0, 0, 0, 0, 0x10];
        let w = mac_to_words(mac);
        assert_eq!(w, [0x0000_0002, 0x0000_1000]);
        assert_eq!(mac_from_words(w[0], w[1]), mac);
    }
}
