// SPDX-License-Identifier: MIT
//! Reading the live stream: whole blocks ([`BlockReader`]) and the packets
//! inside a block ([`StreamPackets`]), both zero-copy.

use std::time::Duration;

use hpcap_core::abi;
use hpcap_core::capfile::Packet;
use hpcap_core::pcapng::{parse_block, Block, BlockHeader, Endian};
use hpcap_core::raw::{parse_raw, RawRecord};

use crate::source::{ListenerMode, Source, WaitResult};
use crate::Result;

/// A whole stream block, borrowed from the mapping.
#[derive(Debug, Clone, Copy)]
pub struct StreamBlock<'a> {
    /// Stream offset of its first byte.
    pub offset: u64,
    /// The block's bytes (block size long).
    pub data: &'a [u8],
    /// `abi::FORMAT_*` of the stream.
    pub format: u32,
}

impl<'a> StreamBlock<'a> {
    /// Its packets.
    pub fn packets(&self) -> StreamPackets<'a> {
        StreamPackets::new(self.data, self.format)
    }

    /// Its block header record, if it starts with a valid one.
    pub fn header(&self) -> Option<BlockHeader> {
        block_header(self.data, self.format)
    }
}

/// The block header at the start of stream `data` of format `format`.
pub fn block_header(data: &[u8], format: u32) -> Option<BlockHeader> {
    match format {
        abi::FORMAT_PCAPNG => match parse_block(data, 0, Endian::LE) {
            Ok((Block::Header(h), _)) => Some(h),
            _ => None,
        },
        _ => match parse_raw(data, 0) {
            Ok((RawRecord::Padding { header, .. }, _)) => header,
            _ => None,
        },
    }
}

/// What [`BlockReader::next_block`] found.
#[derive(Debug)]
pub enum NextBlock<'a> {
    /// A whole block.
    Block(StreamBlock<'a>),
    /// Nothing within the timeout.
    Timeout,
    /// End of stream (source finished, gone, or this listener was killed):
    /// `partial` holds the published bytes of an unfinished last block, if
    /// any (a software source always finishes its last block, so normally
    /// empty).
    End {
        /// Stream offset of the partial bytes.
        offset: u64,
        /// Published bytes of the unfinished block.
        partial: &'a [u8],
    },
}

/// Iterates over whole blocks of a source as one listener.
///
/// Each block returned stays valid (for a blocking listener: is protected
/// from the producer) until the next call, which acknowledges it. A lossy
/// listener must call [`BlockReader::validate`] after using a block; if
/// that reports an overrun the block's bytes may have been overwritten
/// while in use.
#[derive(Debug)]
pub struct BlockReader {
    src: Source,
    mode: ListenerMode,
    unacked: u64,
    start: u64,
    lost_bytes: u64,
    lost_blocks: u64,
    last: WaitResult,
    resumed: bool,
}

impl BlockReader {
    /// Attaches to `src` as a `mode` listener.
    pub fn new(mut src: Source, mode: ListenerMode) -> Result<Self> {
        let start = src.attach(mode)?;
        Ok(Self::with_start(src, mode, start, false))
    }

    /// Attaches to `src` as the named blocking listener `name`, taking
    /// over a lingering one of that name (see [`Source::attach_named`]):
    /// [`Self::resumed`] then says so, and the first block is the first one
    /// the previous owner had not acknowledged. Call
    /// [`Self::detach`] when stopping cleanly; otherwise the listener
    /// lingers for `linger` (`None`: 30 s) after the reader is dropped.
    pub fn named(mut src: Source, name: &str, linger: Option<Duration>) -> Result<Self> {
        let s = src.attach_named(name, linger)?;
        Ok(Self::with_start(
            src,
            ListenerMode::Blocking,
            s.offset,
            s.resumed,
        ))
    }

    fn with_start(src: Source, mode: ListenerMode, start: u64, resumed: bool) -> Self {
        Self {
            src,
            mode,
            unacked: 0,
            start,
            lost_bytes: 0,
            lost_blocks: 0,
            last: WaitResult::default(),
            resumed,
        }
    }

    /// A lingering named listener was taken over: the stream continues
    /// where a previous owner stopped.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Detaches explicitly (a named listener does not linger).
    pub fn detach(&mut self) {
        self.unacked = 0;
        self.src.detach();
    }

    /// The source.
    pub fn source(&self) -> &Source {
        &self.src
    }

    /// The source, mutably (for stats and the like; do not detach it).
    pub fn source_mut(&mut self) -> &mut Source {
        &mut self.src
    }

    /// Stream offset where this listener started.
    pub fn start_offset(&self) -> u64 {
        self.start
    }

    /// Listener mode.
    pub fn mode(&self) -> ListenerMode {
        self.mode
    }

    /// Bytes and blocks lost to overruns so far (lossy listeners).
    pub fn losses(&self) -> (u64, u64) {
        (self.lost_bytes, self.lost_blocks)
    }

    /// Result of the last wait (cursor, availability).
    pub fn last_wait(&self) -> WaitResult {
        self.last
    }

    /// Acknowledges the previous block and waits up to `timeout` for the
    /// next whole block.
    pub fn next_block(&mut self, timeout: Option<Duration>) -> Result<NextBlock<'_>> {
        let bs = self.src.block_size();
        let ack = std::mem::take(&mut self.unacked);
        let w = self.src.wait(ack, bs, timeout)?;
        self.last = w;
        self.lost_bytes += w.lost_bytes;
        self.lost_blocks += w.lost_blocks;
        let format = self.src.format();
        if w.available >= bs {
            self.unacked = bs;
            return Ok(NextBlock::Block(StreamBlock {
                offset: w.read_offset,
                data: self.src.data(w.read_offset, bs as usize),
                format,
            }));
        }
        if w.hangup() {
            let n = w.available as usize;
            self.unacked = w.available;
            return Ok(NextBlock::End {
                offset: w.read_offset,
                partial: if n == 0 {
                    &[]
                } else {
                    self.src.data(w.read_offset, n)
                },
            });
        }
        Ok(NextBlock::Timeout)
    }

    /// The published bytes of the unfinished block at the cursor as the
    /// last wait saw them (after a [`NextBlock::Timeout`]), acknowledging
    /// nothing: a look at what the next block will begin with. Empty while
    /// a returned block is unacknowledged.
    pub fn unfinished(&self) -> &[u8] {
        let n = self.last.available.min(self.src.block_size()) as usize;
        if self.unacked != 0 || n == 0 {
            &[]
        } else {
            self.src.data(self.last.read_offset, n)
        }
    }

    /// The published bytes of the unfinished block at the cursor (for a
    /// clean stop that flushes them), without waiting. Acknowledges the
    /// previous block first.
    pub fn partial_block(&mut self) -> Result<(u64, &[u8])> {
        let ack = std::mem::take(&mut self.unacked);
        let w = self.src.wait(ack, 0, Some(Duration::ZERO))?;
        self.last = w;
        let n = w.available.min(self.src.block_size()) as usize;
        self.unacked = n as u64;
        Ok((
            w.read_offset,
            if n == 0 {
                &[]
            } else {
                self.src.data(w.read_offset, n)
            },
        ))
    }

    /// Lets go of the stream: acknowledges the block returned last if
    /// `consumed_last` (it was stored), detaches (from then on the producer
    /// no longer keeps data for this listener; with no other listener it
    /// drops and counts new frames instead of writing them), waits until
    /// publication has settled (frames reserved before the detach are
    /// published in order; nothing published for 10 ms and, for a software
    /// source, nothing reserved unpublished; at most `settle`), and returns
    /// the published
    /// bytes this listener had not consumed. They stay readable through
    /// [`BlockReader::leftover_data`] until [`BlockReader::leftover_intact`]
    /// says otherwise (only possible while other listeners are attached).
    pub fn let_go(&mut self, consumed_last: bool, settle: Duration) -> Result<Leftover> {
        let ack = std::mem::take(&mut self.unacked);
        let ack = if consumed_last { ack } else { 0 };
        let w = self.src.wait(ack, 0, Some(Duration::ZERO))?;
        self.last = w;
        self.lost_bytes += w.lost_bytes;
        self.lost_blocks += w.lost_blocks;
        self.src.detach();
        let deadline = std::time::Instant::now() + settle;
        let mut commit = self.src.stats()?.commit;
        loop {
            std::thread::sleep(Duration::from_millis(10));
            let now = self.src.stats()?.commit;
            // Settled: no publication for 10 ms and, where the source can
            // tell, nothing reserved left unpublished (a producer that was
            // descheduled mid-batch publishes later).
            let settled = now == commit && self.src.publication_settled() != Some(false);
            if settled || std::time::Instant::now() >= deadline {
                commit = now;
                break;
            }
            commit = now;
        }
        Ok(Leftover {
            start: w.read_offset,
            end: commit.max(w.read_offset),
        })
    }

    /// `len` bytes of a [`Leftover`] at stream offset `off`.
    pub fn leftover_data(&self, off: u64, len: usize) -> &[u8] {
        self.src.data(off, len)
    }

    /// Whether the bytes of `left` from stream offset `off` on are still
    /// intact now (call after using them). Writing stream offset `p`
    /// overwrites `p - buffer_size`, so they are while nothing was written
    /// at or past `off + buffer_size`: certain if nothing was published
    /// since publication settled (reservations made before the detach
    /// stayed below this listener's cursor plus one buffer); with a block
    /// of margin for reservations not yet published if the producer is
    /// still writing (for other listeners).
    pub fn leftover_intact(&self, left: &Leftover, off: u64) -> Result<bool> {
        let commit = self.src.stats()?.commit;
        let margin = if commit == left.end {
            0
        } else {
            self.src.block_size()
        };
        Ok(commit + margin <= off + self.src.buffer_size())
    }

    /// For lossy listeners, after using the last block: `true` if it was
    /// intact. On an overrun the loss is counted and the block must be
    /// discarded (the cursor already moved past it).
    pub fn validate(&mut self) -> Result<bool> {
        if self.mode == ListenerMode::Blocking {
            return Ok(true);
        }
        match self.src.check_read()? {
            None => Ok(true),
            Some((bytes, blocks)) => {
                self.unacked = 0;
                self.lost_bytes += bytes;
                self.lost_blocks += blocks;
                Ok(false)
            }
        }
    }
}

/// Published stream bytes a listener had not consumed when it let go
/// ([`BlockReader::let_go`]): `start..end` in stream offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leftover {
    /// The listener's cursor.
    pub start: u64,
    /// The commit offset once publication settled.
    pub end: u64,
}

/// Packets of stream data (one or more whole blocks, or a published prefix
/// of one): EPBs (pcapng) or RAW packet records; block headers, padding and
/// other blocks are skipped. Ends at the first malformed record.
#[derive(Debug, Clone)]
pub struct StreamPackets<'a> {
    data: &'a [u8],
    pos: usize,
    format: u32,
}

impl<'a> StreamPackets<'a> {
    /// Packets of `data` in stream format `format` (`abi::FORMAT_*`).
    pub fn new(data: &'a [u8], format: u32) -> Self {
        Self {
            data,
            pos: 0,
            format,
        }
    }

    /// Offset of the next record.
    pub fn offset(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for StreamPackets<'a> {
    type Item = Packet<'a>;

    fn next(&mut self) -> Option<Packet<'a>> {
        while self.pos < self.data.len() {
            if self.format == abi::FORMAT_PCAPNG {
                let (b, len) = parse_block(self.data, self.pos, Endian::LE).ok()?;
                self.pos += len;
                if let Block::Epb(e) = b {
                    return Some(Packet {
                        ts_ns: e.ts,
                        orig_len: e.orig_len,
                        data: e.data,
                        interface: e.interface,
                    });
                }
            } else {
                let (r, len) = parse_raw(self.data, self.pos).ok()?;
                self.pos += len;
                if let RawRecord::Packet(p) = r {
                    return Some(Packet {
                        ts_ns: p.ts_ns(),
                        orig_len: u32::from(p.orig_len),
                        data: p.data,
                        interface: 0,
                    });
                }
            }
        }
        None
    }
}
