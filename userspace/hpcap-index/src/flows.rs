// SPDX-License-Identifier: MIT
//! The flow table: one row per flow of a data file, written as Parquet for
//! fleet-wide SQL (DuckDB, ClickHouse, Spark...), partitioned
//! `probe=P/date=YYYY-MM-DD/hour=HH/`.
//!
//! A flow is the outer IP 5-tuple (after VLAN tags) in either direction plus
//! the outermost VLAN ID; its source is the sender of its first packet in
//! the file. Frames without an IP header are not in the table.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use sha1::{Digest, Sha1};

use crate::dissect::{Addr, FlowInfo};

/// One flow of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Sender of the first packet.
    pub src: Addr,
    /// Its peer.
    pub dst: Addr,
    /// Source port (0 without ports).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Outermost VLAN ID.
    pub vlan: Option<u16>,
    /// First timestamp (ns).
    pub first_ts: u64,
    /// Last timestamp (ns).
    pub last_ts: u64,
    /// OR of the TCP flags seen.
    pub tcp_flags: u8,
    /// Packets.
    pub packets: u64,
    /// Bytes on the wire (original lengths).
    pub bytes: u64,
    /// Page of the first packet.
    pub first_page: u32,
    /// Page of the last packet.
    pub last_page: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    a: Addr,
    ap: u16,
    b: Addr,
    bp: u16,
    proto: u8,
    vlan: Option<u16>,
}

/// Flows of one file, as packets are added.
#[derive(Debug, Default)]
pub struct FlowTable {
    flows: HashMap<FlowKey, Flow>,
}

impl FlowTable {
    /// Adds a packet (its dissected flow, if any).
    pub fn add(&mut self, fi: Option<&FlowInfo>, ts: u64, orig_len: u32, page: u32) {
        let Some(fi) = fi else {
            return;
        };
        let (a, ap, b, bp) = if (fi.src, fi.sport) <= (fi.dst, fi.dport) {
            (fi.src, fi.sport, fi.dst, fi.dport)
        } else {
            (fi.dst, fi.dport, fi.src, fi.sport)
        };
        let key = FlowKey {
            a,
            ap,
            b,
            bp,
            proto: fi.proto,
            vlan: fi.vlan,
        };
        let f = self.flows.entry(key).or_insert_with(|| Flow {
            src: fi.src,
            dst: fi.dst,
            sport: fi.sport,
            dport: fi.dport,
            proto: fi.proto,
            vlan: fi.vlan,
            first_ts: ts,
            last_ts: ts,
            tcp_flags: 0,
            packets: 0,
            bytes: 0,
            first_page: page,
            last_page: page,
        });
        f.first_ts = f.first_ts.min(ts);
        f.last_ts = f.last_ts.max(ts);
        f.tcp_flags |= fi.tcp_flags;
        f.packets += 1;
        f.bytes += u64::from(orig_len);
        f.last_page = page;
    }

    /// The flows, ordered by first timestamp.
    pub fn rows(&self) -> Vec<Flow> {
        let mut v: Vec<Flow> = self.flows.values().cloned().collect();
        v.sort_by_key(|x| (x.first_ts, x.src, x.sport));
        v
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// No flows.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

/// Community ID v1 (seed 0) of a flow: `1:` + base64(SHA-1(seed, addresses,
/// protocol, ports)), endpoints ordered. Protocols without ports (ICMP
/// included: its type/code mapping is not applied) hash without ports.
pub fn community_id(f: &Flow) -> String {
    use base64::Engine;
    let (mut a, mut ap, mut b, mut bp) = (f.src, f.sport, f.dst, f.dport);
    let ports = matches!(f.proto, 6 | 17 | 132);
    if (a.octets(), ap) > (b.octets(), bp) && ports || !ports && a.octets() > b.octets() {
        std::mem::swap(&mut a, &mut b);
        std::mem::swap(&mut ap, &mut bp);
    }
    let mut h = Sha1::new();
    h.update(0u16.to_be_bytes());
    h.update(a.octets());
    h.update(b.octets());
    h.update([f.proto, 0]);
    if ports {
        h.update(ap.to_be_bytes());
        h.update(bp.to_be_bytes());
    }
    format!(
        "1:{}",
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    )
}

const SCHEMA: &str = "
message flow {
  required binary probe (STRING);
  required binary file (STRING);
  required int64 first_ts (TIMESTAMP(NANOS,true));
  required int64 last_ts (TIMESTAMP(NANOS,true));
  required binary src_ip (STRING);
  required binary dst_ip (STRING);
  required int32 src_port;
  required int32 dst_port;
  required int32 proto;
  optional int32 vlan;
  required int32 tcp_flags;
  required int64 packets;
  required int64 bytes;
  required int64 first_page;
  required int64 last_page;
  required binary community_id (STRING);
}";

/// Writes `flows` of data file `file` (path relative to the capture
/// directory) captured by `probe` as a Parquet file at `out` (written as a
/// hidden temporary, then renamed).
pub fn write_parquet(flows: &[Flow], probe: &str, file: &str, out: &Path) -> Result<()> {
    let dir = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let schema = Arc::new(parse_message_type(SCHEMA).context("flow schema")?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_max_row_group_size(1 << 20)
            .build(),
    );
    let mut w = SerializedFileWriter::new(f, schema, props).context("parquet writer")?;
    for chunk in flows.chunks(1 << 20) {
        let mut rg = w.next_row_group()?;
        let mut col = 0;
        while let Some(mut c) = rg.next_column()? {
            let s = |v: String| ByteArray::from(v.into_bytes());
            match col {
                0 | 1 | 4 | 5 | 15 => {
                    let vals: Vec<ByteArray> = chunk
                        .iter()
                        .map(|r| match col {
                            0 => s(probe.to_string()),
                            1 => s(file.to_string()),
                            4 => s(r.src.ip().to_string()),
                            5 => s(r.dst.ip().to_string()),
                            _ => s(community_id(r)),
                        })
                        .collect();
                    c.typed::<ByteArrayType>().write_batch(&vals, None, None)?;
                }
                2 | 3 | 11 | 12 | 13 | 14 => {
                    let vals: Vec<i64> = chunk
                        .iter()
                        .map(|r| match col {
                            2 => r.first_ts as i64,
                            3 => r.last_ts as i64,
                            11 => r.packets as i64,
                            12 => r.bytes as i64,
                            13 => i64::from(r.first_page),
                            _ => i64::from(r.last_page),
                        })
                        .collect();
                    c.typed::<Int64Type>().write_batch(&vals, None, None)?;
                }
                9 => {
                    let defs: Vec<i16> =
                        chunk.iter().map(|r| i16::from(r.vlan.is_some())).collect();
                    let vals: Vec<i32> =
                        chunk.iter().filter_map(|r| r.vlan.map(i32::from)).collect();
                    c.typed::<Int32Type>()
                        .write_batch(&vals, Some(&defs), None)?;
                }
                _ => {
                    let vals: Vec<i32> = chunk
                        .iter()
                        .map(|r| match col {
                            6 => i32::from(r.sport),
                            7 => i32::from(r.dport),
                            8 => i32::from(r.proto),
                            _ => i32::from(r.tcp_flags),
                        })
                        .collect();
                    c.typed::<Int32Type>().write_batch(&vals, None, None)?;
                }
            }
            c.close()?;
            col += 1;
        }
        rg.close()?;
    }
    let f = w.into_inner().context("closing the parquet file")?;
    f.sync_all().ok();
    std::fs::rename(&tmp, out)
        .with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    Ok(())
}

/// Where the flow table of data file `rel` (relative to the capture
/// directory `dir`, named `YYYY-MM-DD/HH/NAME.ext` by hpcapdd) of `probe`
/// goes: `dir/flows/probe=P/date=YYYY-MM-DD/hour=HH/NAME.parquet`, the date
/// and hour from `first_ts` (UTC).
pub fn parquet_path(dir: &Path, probe: &str, first_ts: u64, data_name: &str) -> std::path::PathBuf {
    let u = hpcap::util::Utc::from_ns(first_ts);
    let stem = data_name
        .rsplit_once('.')
        .map_or(data_name, |(s, _)| s)
        .trim_start_matches('.');
    dir.join("flows")
        .join(format!("probe={probe}"))
        .join(format!("date={:04}-{:02}-{:02}", u.year, u.month, u.day))
        .join(format!("hour={:02}", u.hour))
        .join(format!("{stem}.parquet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> Addr {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&a);
        Addr { v6: false, bytes }
    }

    #[test]
    fn community_id_matches_the_spec_baseline() {
        // community-id-spec baseline: TCP 128.232.110.120:34855 -> 66.35.250.204:80.
        let f = Flow {
            src: v4([128, 232, 110, 120]),
            dst: v4([66, 35, 250, 204]),
            sport: 34855,
            dport: 80,
            proto: 6,
            vlan: None,
            first_ts: 0,
            last_ts: 0,
            tcp_flags: 0,
            packets: 1,
            bytes: 1,
            first_page: 0,
            last_page: 0,
        };
        assert_eq!(community_id(&f), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        let mut r = f.clone();
        std::mem::swap(&mut r.src, &mut r.dst);
        std::mem::swap(&mut r.sport, &mut r.dport);
        assert_eq!(community_id(&r), community_id(&f), "direction-free");
    }

    #[test]
    fn both_directions_are_one_flow() {
        let mut t = FlowTable::default();
        let a = FlowInfo {
            src: v4([10, 0, 0, 1]),
            dst: v4([10, 0, 0, 2]),
            proto: 6,
            sport: 1000,
            dport: 80,
            vlan: None,
            tcp_flags: 2,
        };
        let b = FlowInfo {
            src: a.dst,
            dst: a.src,
            sport: 80,
            dport: 1000,
            tcp_flags: 0x12,
            ..a
        };
        t.add(Some(&a), 5, 60, 1);
        t.add(Some(&b), 7, 60, 3);
        t.add(None, 8, 60, 3);
        let rows = t.rows();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.src, r.sport, r.packets, r.bytes), (a.src, 1000, 2, 120));
        assert_eq!(
            (
                r.first_ts,
                r.last_ts,
                r.tcp_flags,
                r.first_page,
                r.last_page
            ),
            (5, 7, 0x12, 1, 3)
        );
    }
}
