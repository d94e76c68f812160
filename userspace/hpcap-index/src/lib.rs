// SPDX-License-Identifier: MIT
//! `hpcap_index`: per-file packet indexes for hpcap capture files, the
//! query language of `hpcap-query`, and per-file flow tables.
//!
//! - [`dissect`]: which keys a frame carries (addresses, ports, protocols,
//!   VLANs, ether types, tunnel inner addresses) and its outer flow.
//! - [`builder`]: packets in, an encoded `.hpidx` out (roaring page sets
//!   per key, an fst key map, a page directory, a block table, a filter).
//! - [`format`]: the `.hpidx` layout.
//! - [`reader`]: key and range lookups, and reading the pages they name.
//! - [`fetch`]: many scattered reads at once (io_uring, `O_DIRECT`).
//! - [`files`]: indexing existing files (pcapng, classic pcap, RAW) and
//!   writing sidecars crash-safely.
//! - [`flows`]: the Parquet flow table.
//! - [`synth`]: synthetic traffic for tests and benchmarks.
//! - [`query`]: the query language, page-set evaluation and the exact
//!   per-packet predicate.

pub mod builder;
pub mod dissect;
pub mod fetch;
pub mod files;
pub mod flows;
pub mod format;
pub mod query;
pub mod reader;
pub mod synth;
