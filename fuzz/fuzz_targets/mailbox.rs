// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The VF mailbox on arbitrary bytes: the first 32 bytes as an admin-queue
//! descriptor, the rest as a virtchnl message. No parser may panic; a
//! descriptor survives both of its encodings; every message a parser
//! accepts re-encodes to a message it accepts again with the same values,
//! and the PF's length check agrees with the parsers.
#![no_main]

use hpcap_core::adminq::{Desc, DESC_LEN};
use hpcap_core::virtchnl::{
    link_speed_mbps, op, valid_request, EtherAddrList, EthStats, IrqMapInfo, PfEvent, PromiscInfo,
    QueueSelect, VersionInfo, VfResourceMsg, VsiQueueConfig,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = [0u8; DESC_LEN];
    let n = data.len().min(DESC_LEN);
    d[..n].copy_from_slice(&data[..n]);
    let desc = Desc::from_bytes(&d);
    assert_eq!(desc.to_bytes(), d);
    assert_eq!(Desc::from_words(&desc.to_words()), desc);
    let _ = desc.pf_message();
    let msg = &data[n..];
    let mut out = vec![0u8; 70_000];

    for opcode in 0..32 {
        let _ = valid_request(opcode, msg);
    }
    if let Some(v) = VersionInfo::parse(msg) {
        let n = v.encode(&mut out).unwrap();
        assert_eq!(&out[..n], msg);
    }
    if let Some(m) = VfResourceMsg::parse(msg) {
        let _ = (m.sriov_vsi(), m.vsi(m.res.num_vsis));
        let vsis: Vec<_> = (0..m.res.num_vsis).filter_map(|i| m.vsi(i)).collect();
        assert_eq!(vsis.len(), usize::from(m.res.num_vsis));
        let n = VfResourceMsg::encode(&m.res, &vsis, &mut out).unwrap();
        let again = VfResourceMsg::parse(&out[..n]).unwrap();
        assert_eq!(again.res, m.res);
    }
    if let Some(q) = VsiQueueConfig::parse(msg) {
        assert_eq!(valid_request(op::CONFIG_VSI_QUEUES, msg), Some(true));
        let pairs: Vec<_> = q.pairs().collect();
        assert_eq!(pairs.len(), usize::from(q.num_queue_pairs));
        let n = VsiQueueConfig::encode(q.vsi_id, &pairs, &mut out).unwrap();
        assert_eq!(n, msg.len());
        let again = VsiQueueConfig::parse(&out[..n]).unwrap();
        assert_eq!(again.pairs().collect::<Vec<_>>(), pairs);
    }
    if let Some(m) = IrqMapInfo::parse(msg) {
        assert_eq!(valid_request(op::CONFIG_IRQ_MAP, msg), Some(true));
        let maps: Vec<_> = m.maps().collect();
        let n = IrqMapInfo::encode(&maps, &mut out).unwrap();
        assert_eq!(IrqMapInfo::parse(&out[..n]).unwrap().maps().collect::<Vec<_>>(), maps);
    }
    if let Some(l) = EtherAddrList::parse(msg) {
        assert_eq!(valid_request(op::ADD_ETH_ADDR, msg), Some(true));
        let addrs: Vec<_> = l.addrs().collect();
        let n = EtherAddrList::encode(l.vsi_id, &addrs, &mut out).unwrap();
        assert_eq!(EtherAddrList::parse(&out[..n]).unwrap().addrs().collect::<Vec<_>>(), addrs);
    }
    if let Some(s) = QueueSelect::parse(msg) {
        let n = s.encode(&mut out).unwrap();
        assert_eq!(QueueSelect::parse(&out[..n]), Some(s));
    }
    if let Some(p) = PromiscInfo::parse(msg) {
        let n = p.encode(&mut out).unwrap();
        assert_eq!(&out[..n], msg);
    }
    if let Some(s) = EthStats::parse(msg) {
        let n = s.encode(&mut out).unwrap();
        assert_eq!(&out[..n], msg);
    }
    if let Some(e) = PfEvent::parse(msg) {
        let _ = link_speed_mbps(e.link_speed);
        let n = e.encode(&mut out).unwrap();
        assert_eq!(PfEvent::parse(&out[..n]), Some(e));
    }
});
