// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Classic BPF: a verifier and an interpreter, so filters compiled in
//! userspace with libpcap (`tcpdump -dd EXPR`) can run in the driver.
//!
//! Semantics follow libpcap's reference interpreter (`bpf_filter`), which is
//! also what Linux does for everything tcpdump emits against an offline
//! (non-Linux-ancillary) link type:
//!
//! - loads past the captured bytes end the program with return value 0;
//! - division or modulo by a zero X returns 0; by a zero constant is rejected;
//! - shifts by X of 32 or more give 0 (libpcap; Linux masks, but tcpdump
//!   never shifts by X); constant shifts of 32 or more are rejected, as Linux does;
//! - `LD LEN` is the wire length, loads index the captured bytes.
//!
//! The verifier (Linux's rules, made stricter where Linux has special
//! cases we do not implement) accepts only programs of 1..=[`MAX_INSNS`]
//! known instructions whose jumps go forward and stay inside, whose last
//! instruction is a `RET`, whose scratch-memory accesses name one of the 16
//! words, and that never read a scratch word not stored on every path
//! before. Such programs always terminate, in at most `len` steps. Linux
//! ancillary loads (negative offsets) are rejected: the driver sees raw
//! frames with their VLAN tags, so filters must be compiled for a plain
//! Ethernet link (`tcpdump -r file.pcap -dd EXPR` or `-y EN10MB`). A tag the
//! NIC stripped into the descriptor is put back for the filter
//! ([`Program::run_frame`] over a [`WireFrame`]), as it is in the stream.

use super::frame::WireFrame;

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

/// Most instructions a program may have (Linux's `BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;
/// Words of scratch memory (`BPF_MEMWORDS`).
pub const MEM_WORDS: usize = 16;

/// Opcode fields.
// The kernel's interpreter needs only some of the names.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub mod op {
    /// Instruction class mask.
    pub const CLASS: u16 = 0x07;
    /// Load into A.
    pub const LD: u16 = 0x00;
    /// Load into X.
    pub const LDX: u16 = 0x01;
    /// Store A.
    pub const ST: u16 = 0x02;
    /// Store X.
    pub const STX: u16 = 0x03;
    /// Arithmetic.
    pub const ALU: u16 = 0x04;
    /// Jumps.
    pub const JMP: u16 = 0x05;
    /// Return.
    pub const RET: u16 = 0x06;
    /// Register transfers.
    pub const MISC: u16 = 0x07;

    /// Load size: word.
    pub const W: u16 = 0x00;
    /// Load size: half word.
    pub const H: u16 = 0x08;
    /// Load size: byte.
    pub const B: u16 = 0x10;

    /// Mode: immediate.
    pub const IMM: u16 = 0x00;
    /// Mode: absolute packet offset.
    pub const ABS: u16 = 0x20;
    /// Mode: packet offset X + k.
    pub const IND: u16 = 0x40;
    /// Mode: scratch memory.
    pub const MEM: u16 = 0x60;
    /// Mode: wire length.
    pub const LEN: u16 = 0x80;
    /// Mode: IP header length `4 * (P[k] & 0xf)`.
    pub const MSH: u16 = 0xa0;

    /// ALU/JMP operand: constant.
    pub const K: u16 = 0x00;
    /// ALU/JMP operand: X.
    pub const X: u16 = 0x08;
    /// RET operand: A.
    pub const A: u16 = 0x10;

    /// ALU: add.
    pub const ADD: u16 = 0x00;
    /// ALU: subtract.
    pub const SUB: u16 = 0x10;
    /// ALU: multiply.
    pub const MUL: u16 = 0x20;
    /// ALU: divide.
    pub const DIV: u16 = 0x30;
    /// ALU: or.
    pub const OR: u16 = 0x40;
    /// ALU: and.
    pub const AND: u16 = 0x50;
    /// ALU: shift left.
    pub const LSH: u16 = 0x60;
    /// ALU: shift right.
    pub const RSH: u16 = 0x70;
    /// ALU: negate.
    pub const NEG: u16 = 0x80;
    /// ALU: modulo.
    pub const MOD: u16 = 0x90;
    /// ALU: exclusive or.
    pub const XOR: u16 = 0xa0;

    /// JMP: always.
    pub const JA: u16 = 0x00;
    /// JMP: equal.
    pub const JEQ: u16 = 0x10;
    /// JMP: greater than.
    pub const JGT: u16 = 0x20;
    /// JMP: greater or equal.
    pub const JGE: u16 = 0x30;
    /// JMP: any bit set.
    pub const JSET: u16 = 0x40;

    /// MISC: X = A.
    pub const TAX: u16 = 0x00;
    /// MISC: A = X.
    pub const TXA: u16 = 0x80;
}

/// Why a program is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// No instructions.
    Empty,
    /// More than [`MAX_INSNS`] instructions.
    TooLong,
    /// Unknown or unsupported opcode at `pc`.
    BadOpcode {
        /// Instruction index.
        pc: usize,
    },
    /// A jump at `pc` leaves the program.
    BadJump {
        /// Instruction index.
        pc: usize,
    },
    /// A scratch-memory index of 16 or more at `pc`.
    BadMemSlot {
        /// Instruction index.
        pc: usize,
    },
    /// A scratch word read at `pc` may not have been stored on every path.
    UninitMem {
        /// Instruction index.
        pc: usize,
    },
    /// Division or modulo by the constant 0 at `pc`.
    DivByZero {
        /// Instruction index.
        pc: usize,
    },
    /// A constant shift of 32 or more at `pc`.
    BadShift {
        /// Instruction index.
        pc: usize,
    },
    /// A load at `pc` with a negative offset (Linux ancillary data).
    Ancillary {
        /// Instruction index.
        pc: usize,
    },
    /// The last instruction is not a `RET`.
    NoFinalRet,
}

/// Whether `code` is an instruction this module implements.
pub const fn is_valid_opcode(code: u16) -> bool {
    use op::*;
    match code & CLASS {
        LD => matches!(
            code,
            0x00 | 0x20 | 0x28 | 0x30 | 0x40 | 0x48 | 0x50 | 0x60 | 0x80
        ),
        LDX => matches!(code, 0x01 | 0x61 | 0x81 | 0xb1),
        ST | STX => code & !CLASS == 0,
        ALU => {
            let opn = code & 0xf0;
            let src = code & 0x08;
            if code & !(0xf0 | 0x08 | CLASS) != 0 {
                false
            } else if opn == NEG {
                src == 0
            } else {
                opn <= XOR
            }
        }
        JMP => {
            let opn = code & 0xf0;
            let src = code & 0x08;
            if code & !(0xf0 | 0x08 | CLASS) != 0 {
                false
            } else if opn == JA {
                src == 0
            } else {
                opn <= JSET
            }
        }
        RET => matches!(code, 0x06 | 0x16),
        _ => matches!(code, 0x07 | 0x87),
    }
}

/// Successors of instruction `pc` (fall-through or jump targets); `None`
/// for `RET` or a jump that leaves the program.
fn successors(ins: &SockFilter, pc: usize, len: usize) -> Option<[Option<usize>; 2]> {
    let next = pc.checked_add(1)?;
    let within = |t: usize| (t < len).then_some(t);
    match ins.code & op::CLASS {
        op::RET => Some([None, None]),
        op::JMP if ins.code & 0xf0 == op::JA => {
            let t = next.checked_add(usize::try_from(ins.k).ok()?)?;
            Some([Some(within(t)?), None])
        }
        op::JMP => {
            let t = within(next.checked_add(usize::from(ins.jt))?)?;
            let f = within(next.checked_add(usize::from(ins.jf))?)?;
            Some([Some(t), Some(f)])
        }
        _ => Some([Some(within(next)?), None]),
    }
}

/// Bitset over instruction indices.
struct PcSet([u64; MAX_INSNS / 64]);

impl PcSet {
    fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    fn set(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
}

/// A verified program, ready to run.
#[derive(Debug, Clone, Copy)]
pub struct Program<'a> {
    insns: &'a [SockFilter],
}

/// Checks `insns` and returns it as a runnable [`Program`]. Uses about
/// 600 bytes of stack, no heap, and O(16 · len) time.
pub fn verify(insns: &[SockFilter]) -> Result<Program<'_>, VerifyError> {
    let len = insns.len();
    if len == 0 {
        return Err(VerifyError::Empty);
    }
    if len > MAX_INSNS {
        return Err(VerifyError::TooLong);
    }
    if insns.last().is_none_or(|i| i.code & op::CLASS != op::RET) {
        return Err(VerifyError::NoFinalRet);
    }
    for (pc, ins) in insns.iter().enumerate() {
        if !is_valid_opcode(ins.code) {
            return Err(VerifyError::BadOpcode { pc });
        }
        let class = ins.code & op::CLASS;
        let mode = ins.code & 0xe0;
        let is_mem = matches!(class, op::ST | op::STX)
            || (matches!(class, op::LD | op::LDX) && mode == op::MEM);
        if is_mem && ins.k as usize >= MEM_WORDS {
            return Err(VerifyError::BadMemSlot { pc });
        }
        if matches!(class, op::LD | op::LDX)
            && matches!(mode, op::ABS | op::MSH)
            && ins.k >= 0x8000_0000
        {
            return Err(VerifyError::Ancillary { pc });
        }
        if class == op::ALU && ins.code & op::X == 0 {
            let opn = ins.code & 0xf0;
            if matches!(opn, op::DIV | op::MOD) && ins.k == 0 {
                return Err(VerifyError::DivByZero { pc });
            }
            if matches!(opn, op::LSH | op::RSH) && ins.k >= 32 {
                return Err(VerifyError::BadShift { pc });
            }
        }
        if successors(ins, pc, len).is_none() {
            return Err(VerifyError::BadJump { pc });
        }
    }
    // For each scratch word: the instructions reachable from the start on a
    // path that has not stored it. Reading it there is an error. Jumps only
    // go forward, so one pass in index order settles each set.
    for slot in 0..MEM_WORDS as u32 {
        let mut open = PcSet([0; MAX_INSNS / 64]);
        open.set(0);
        for (pc, ins) in insns.iter().enumerate() {
            if !open.get(pc) {
                continue;
            }
            let class = ins.code & op::CLASS;
            let reads = matches!(class, op::LD | op::LDX) && ins.code & 0xe0 == op::MEM;
            if reads && ins.k == slot {
                return Err(VerifyError::UninitMem { pc });
            }
            if matches!(class, op::ST | op::STX) && ins.k == slot {
                continue;
            }
            for s in successors(ins, pc, len)
                .unwrap_or([None, None])
                .into_iter()
                .flatten()
            {
                open.set(s);
            }
        }
    }
    Ok(Program { insns })
}

/// A program verified once, when it was installed, and owned by whoever
/// installed it (`S` is the storage: a `Vec`, a kernel `KVec`, an array).
/// The only way to build one is [`Verified::new`], so holding one proves
/// the instructions passed [`verify`]; running it never verifies again.
#[derive(Debug, Clone)]
pub struct Verified<S> {
    insns: S,
}

impl<S: core::ops::Deref<Target = [SockFilter]>> Verified<S> {
    /// Verifies `insns` and takes them.
    pub fn new(insns: S) -> Result<Self, VerifyError> {
        verify(&insns)?;
        Ok(Self { insns })
    }

    /// The program, ready to run.
    pub fn program(&self) -> Program<'_> {
        Program { insns: &self.insns }
    }

    /// The instructions.
    #[cfg(not(hpcap_kernel))]
    pub fn insns(&self) -> &[SockFilter] {
        &self.insns
    }
}

fn load(pkt: &WireFrame<'_>, off: u32, size: usize) -> Option<u32> {
    let start = usize::try_from(off).ok()?;
    if let Some(bytes) = pkt.as_plain() {
        let b = bytes.get(start..start.checked_add(size)?)?;
        return Some(match *b {
            [x] => u32::from(x),
            [x, y] => u32::from(u16::from_be_bytes([x, y])),
            [a, b2, c, d] => u32::from_be_bytes([a, b2, c, d]),
            _ => return None,
        });
    }
    // A stripped tag put back: byte by byte (rare: some VF configurations).
    let mut v = 0u32;
    for i in 0..size {
        v = (v << 8) | u32::from(pkt.byte(start.checked_add(i)?)?);
    }
    Some(v)
}

impl<'a> Program<'a> {
    /// The instructions.
    #[cfg(not(hpcap_kernel))]
    pub fn insns(&self) -> &'a [SockFilter] {
        self.insns
    }

    /// Runs the filter over the captured bytes `pkt` of a frame of `wirelen`
    /// bytes on the wire; returns the filter's verdict: 0 to drop, otherwise
    /// the number of bytes to keep (tcpdump returns its snaplen).
    #[cfg(not(hpcap_kernel))]
    pub fn run(&self, pkt: &[u8], wirelen: u32) -> u32 {
        self.run_frame(&WireFrame::plain(pkt), wirelen)
    }

    /// [`Program::run`] over a frame whose stripped VLAN tag is put back.
    pub fn run_frame(&self, pkt: &WireFrame<'_>, wirelen: u32) -> u32 {
        run_inner(self.insns, pkt, wirelen).unwrap_or(0)
    }

    /// Whether the filter accepts the frame.
    #[cfg(not(hpcap_kernel))]
    pub fn matches(&self, pkt: &[u8], wirelen: u32) -> bool {
        self.run(pkt, wirelen) != 0
    }

    /// Whether the filter accepts the frame as it was on the wire.
    pub fn matches_frame(&self, pkt: &WireFrame<'_>, wirelen: u32) -> bool {
        self.run_frame(pkt, wirelen) != 0
    }
}

/// `None` means "return 0": an out-of-bounds load, a division by zero, or
/// (impossible after verification) a malformed instruction.
fn run_inner(insns: &[SockFilter], pkt: &WireFrame<'_>, wirelen: u32) -> Option<u32> {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; MEM_WORDS];
    let mut pc = 0usize;
    loop {
        let ins = *insns.get(pc)?;
        pc = pc.checked_add(1)?;
        let k = ins.k;
        match ins.code & op::CLASS {
            op::RET => return Some(if ins.code & op::A != 0 { a } else { k }),
            op::LD => {
                a = match ins.code {
                    0x00 => k,
                    0x20 => load(pkt, k, 4)?,
                    0x28 => load(pkt, k, 2)?,
                    0x30 => load(pkt, k, 1)?,
                    0x40 => load(pkt, x.wrapping_add(k), 4)?,
                    0x48 => load(pkt, x.wrapping_add(k), 2)?,
                    0x50 => load(pkt, x.wrapping_add(k), 1)?,
                    0x60 => *mem.get(k as usize)?,
                    0x80 => wirelen,
                    _ => return None,
                }
            }
            op::LDX => {
                x = match ins.code {
                    0x01 => k,
                    0x61 => *mem.get(k as usize)?,
                    0x81 => wirelen,
                    0xb1 => (load(pkt, k, 1)? & 0xf) << 2,
                    _ => return None,
                }
            }
            op::ST => *mem.get_mut(k as usize)? = a,
            op::STX => *mem.get_mut(k as usize)? = x,
            op::ALU => {
                let v = if ins.code & op::X != 0 { x } else { k };
                a = match ins.code & 0xf0 {
                    op::ADD => a.wrapping_add(v),
                    op::SUB => a.wrapping_sub(v),
                    op::MUL => a.wrapping_mul(v),
                    op::DIV => a.checked_div(v)?,
                    op::MOD => a.checked_rem(v)?,
                    op::OR => a | v,
                    op::AND => a & v,
                    op::XOR => a ^ v,
                    op::LSH => a.checked_shl(v).unwrap_or(0),
                    op::RSH => a.checked_shr(v).unwrap_or(0),
                    op::NEG => a.wrapping_neg(),
                    _ => return None,
                }
            }
            op::JMP => {
                let v = if ins.code & op::X != 0 { x } else { k };
                let skip = match ins.code & 0xf0 {
                    op::JA => usize::try_from(k).ok()?,
                    c => {
                        let cond = match c {
                            op::JEQ => a == v,
                            op::JGT => a > v,
                            op::JGE => a >= v,
                            op::JSET => a & v != 0,
                            _ => return None,
                        };
                        usize::from(if cond { ins.jt } else { ins.jf })
                    }
                };
                pc = pc.checked_add(skip)?;
            }
            _ => {
                if ins.code & op::TXA != 0 {
                    a = x;
                } else {
                    x = a;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const fn i(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
        SockFilter { code, jt, jf, k }
    }

    const RET_K: u16 = 0x06;

    #[test]
    fn verifier_rejections() {
        assert_eq!(verify(&[]).unwrap_err(), VerifyError::Empty);
        let long = [i(RET_K, 0, 0, 1); MAX_INSNS + 1];
        assert_eq!(verify(&long).unwrap_err(), VerifyError::TooLong);
        assert!(verify(&long[..MAX_INSNS]).is_ok());
        assert_eq!(
            verify(&[i(0x0e, 0, 0, 0)]).unwrap_err(),
            VerifyError::BadOpcode { pc: 0 }
        );
        assert_eq!(
            verify(&[i(0x20, 0, 0, 0)]).unwrap_err(),
            VerifyError::NoFinalRet
        );
        // Jumps: past the end, and JA that would leave.
        assert_eq!(
            verify(&[i(0x15, 1, 0, 0), i(RET_K, 0, 0, 0)]).unwrap_err(),
            VerifyError::BadJump { pc: 0 }
        );
        assert_eq!(
            verify(&[i(0x05, 0, 0, 1), i(RET_K, 0, 0, 0)]).unwrap_err(),
            VerifyError::BadJump { pc: 0 }
        );
        assert_eq!(
            verify(&[i(0x05, 0, 0, u32::MAX), i(RET_K, 0, 0, 0)]).unwrap_err(),
            VerifyError::BadJump { pc: 0 }
        );
        assert_eq!(
            verify(&[i(0x02, 0, 0, 16), i(RET_K, 0, 0, 0)]).unwrap_err(),
            VerifyError::BadMemSlot { pc: 0 }
        );
        assert_eq!(
            verify(&[i(0x34, 0, 0, 0), i(RET_K, 0, 0, 0)]).unwrap_err(),
            VerifyError::DivByZero { pc: 0 }
        );
        assert_eq!(
            verify(&[i(0x94, 0, 0, 0), i(RET_K, 0, 0, 0)]).unwrap_err(),
            VerifyError::DivByZero { pc: 0 }
        );
        assert_eq!(
            verify(&[i(0x64, 0, 0, 32), i(RET_K, 0, 0, 0)]).unwrap_err(),
            VerifyError::BadShift { pc: 0 }
        );
        assert_eq!(
            verify(&[i(0x30, 0, 0, 0xffff_f02c), i(RET_K, 0, 0, 0)]).unwrap_err(),
            VerifyError::Ancillary { pc: 0 }
        );
        // M[3] read without a store: directly, and on one branch only.
        assert_eq!(
            verify(&[i(0x60, 0, 0, 3), i(0x16, 0, 0, 0)]).unwrap_err(),
            VerifyError::UninitMem { pc: 0 }
        );
        let one_branch = [
            i(0x15, 0, 1, 7), // if A == 7
            i(0x02, 0, 0, 3), //   M[3] = A
            i(0x61, 0, 0, 3), // X = M[3]   <- not stored when A != 7
            i(0x16, 0, 0, 0),
        ];
        assert_eq!(
            verify(&one_branch).unwrap_err(),
            VerifyError::UninitMem { pc: 2 }
        );
        let both = [
            i(0x15, 0, 2, 7),
            i(0x02, 0, 0, 3),
            i(0x05, 0, 0, 1),
            i(0x03, 0, 0, 3), // else M[3] = X
            i(0x61, 0, 0, 3),
            i(0x87, 0, 0, 0),
            i(0x16, 0, 0, 0),
        ];
        assert!(verify(&both).is_ok());
        // Unreachable reads do not count.
        let dead = [i(RET_K, 0, 0, 1), i(0x60, 0, 0, 5), i(0x16, 0, 0, 0)];
        assert!(verify(&dead).is_ok());
    }

    #[test]
    fn every_valid_opcode_runs() {
        let mut n = 0;
        for code in 0..=u16::MAX {
            if !is_valid_opcode(code) {
                continue;
            }
            n += 1;
            let class = code & op::CLASS;
            let jump_or_mem =
                class == op::JMP || matches!(class, op::ST | op::STX) || code & 0xe0 == op::MEM;
            let k = if jump_or_mem { 0 } else { 2 };
            let prog = [i(0x02, 0, 0, 0), i(code, 0, 0, k), i(0x16, 0, 0, 0)];
            let p = verify(&prog).unwrap();
            let _ = p.run(&[1, 2, 3, 4, 5, 6], 60);
            let _ = p.run(&[], 0);
        }
        // LD 9 + LDX 4 + ST + STX + ALU 21 + JMP 9 + RET 2 + MISC 2
        assert_eq!(n, 9 + 4 + 2 + 21 + 9 + 2 + 2);
    }

    #[test]
    fn semantics() {
        let pkt = [0x45u8, 0x00, 0x01, 0x02, 0xAA, 0xBB, 0xCC, 0xDD];
        let run = |prog: &[SockFilter]| verify(prog).unwrap().run(&pkt, 1000);
        assert_eq!(run(&[i(0x20, 0, 0, 4), i(0x16, 0, 0, 0)]), 0xAABB_CCDD);
        assert_eq!(run(&[i(0x28, 0, 0, 2), i(0x16, 0, 0, 0)]), 0x0102);
        assert_eq!(
            run(&[i(0x20, 0, 0, 5), i(0x16, 0, 0, 0)]),
            0,
            "OOB load returns 0"
        );
        assert_eq!(
            run(&[i(0x80, 0, 0, 0), i(0x16, 0, 0, 0)]),
            1000,
            "LEN is the wire length"
        );
        assert_eq!(
            run(&[i(0xb1, 0, 0, 0), i(0x87, 0, 0, 0), i(0x16, 0, 0, 0)]),
            20,
            "MSH"
        );
        // IND adds X + k modulo 2^32, like libpcap and Linux.
        assert_eq!(
            run(&[i(0x01, 0, 0, u32::MAX), i(0x50, 0, 0, 0), i(RET_K, 0, 0, 9)]),
            0
        );
        assert_eq!(
            run(&[i(0x01, 0, 0, u32::MAX), i(0x50, 0, 0, 1), i(0x16, 0, 0, 0)]),
            0x45
        );
        // Division by a zero X returns 0; shifts by X >= 32 give 0.
        assert_eq!(
            run(&[i(0x00, 0, 0, 7), i(0x3c, 0, 0, 0), i(RET_K, 0, 0, 9)]),
            0
        );
        assert_eq!(
            run(&[
                i(0x00, 0, 0, 7),
                i(0x01, 0, 0, 32),
                i(0x6c, 0, 0, 0),
                i(0x16, 0, 0, 0)
            ]),
            0
        );
        assert_eq!(
            run(&[
                i(0x00, 0, 0, 7),
                i(0x01, 0, 0, 31),
                i(0x6c, 0, 0, 0),
                i(0x16, 0, 0, 0)
            ]),
            1 << 31
        );
        assert_eq!(
            run(&[i(0x00, 0, 0, 7), i(0x84, 0, 0, 0), i(0x16, 0, 0, 0)]),
            7u32.wrapping_neg()
        );
        assert_eq!(
            run(&[i(0x00, 0, 0, 7), i(0x94, 0, 0, 4), i(0x16, 0, 0, 0)]),
            3
        );
        // Conditional jumps.
        let jset = [
            i(0x00, 0, 0, 6),
            i(0x45, 1, 0, 4),
            i(RET_K, 0, 0, 1),
            i(RET_K, 0, 0, 2),
        ];
        assert_eq!(run(&jset), 2);
        let jgt_x = [
            i(0x00, 0, 0, 6),
            i(0x01, 0, 0, 6),
            i(0x2d, 1, 0, 0),
            i(RET_K, 0, 0, 1),
            i(RET_K, 0, 0, 2),
        ];
        assert_eq!(run(&jgt_x), 1);
    }

    fn insn() -> impl Strategy<Value = SockFilter> {
        (
            any::<u16>(),
            0u8..6,
            0u8..6,
            prop_oneof![0u32..64, any::<u32>()],
        )
            .prop_map(|(c, jt, jf, k)| {
                // Bias towards valid opcodes.
                let code = if c % 4 == 0 { c >> 2 } else { (c >> 2) & 0xff };
                i(code, jt, jf, k)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        /// Whatever the verifier accepts runs to completion without panicking.
        #[test]
        fn accepted_programs_never_panic(
            mut prog in proptest::collection::vec(insn(), 1..24),
            pkt in proptest::collection::vec(any::<u8>(), 0..80),
            wire in any::<u32>(),
        ) {
            if let Some(last) = prog.last_mut() {
                if last.code % 3 == 0 { last.code = 0x16; }
            }
            let progv: Vec<_> = prog;
            if let Ok(p) = verify(&progv) {
                let _ = p.run(&pkt, wire);
            }
        }

        /// Over a frame whose stripped tag is put back, a program sees
        /// exactly what it sees over the tagged bytes.
        #[test]
        fn stripped_tag_is_seen_as_on_the_wire(
            mut prog in proptest::collection::vec(insn(), 1..24),
            pkt in proptest::collection::vec(any::<u8>(), 0..80),
            tci in any::<u16>(),
            wire in any::<u32>(),
        ) {
            if let Some(last) = prog.last_mut() {
                if last.code % 3 == 0 { last.code = 0x16; }
            }
            if let Ok(p) = verify(&prog) {
                let f = WireFrame::new(&pkt, Some(tci));
                let mut tagged = std::vec![0u8; f.len()];
                f.copy_prefix(&mut tagged);
                prop_assert_eq!(p.run_frame(&f, wire), p.run(&tagged, wire));
            }
        }
    }

    proptest! {
        /// Loads of every width at every offset around the tag (absolute,
        /// and indexed through X from `LDX MSH` and an immediate) read the
        /// same over the view as over the rebuilt bytes.
        #[test]
        fn loads_around_a_stripped_tag(
            pkt in proptest::collection::vec(any::<u8>(), 0..40),
            tci in any::<u16>(),
            code in prop_oneof![Just(0x20u16), Just(0x28), Just(0x30), Just(0x40), Just(0x48), Just(0x50)],
            k in 0u32..24,
            x_from in prop_oneof![Just(0x01u16), Just(0xb1)],
            xk in 0u32..20,
        ) {
            let prog = [i(x_from, 0, 0, xk), i(code, 0, 0, k), i(0x16, 0, 0, 0)];
            let p = verify(&prog).unwrap();
            let f = WireFrame::new(&pkt, Some(tci));
            let mut tagged = std::vec![0u8; f.len()];
            f.copy_prefix(&mut tagged);
            prop_assert_eq!(p.run_frame(&f, 100), p.run(&tagged, 100));
        }
    }

    #[test]
    fn vlan_filter_matches_a_stripped_tag() {
        // tcpdump -y EN10MB -dd 'vlan 100'
        let prog = [
            i(0x28, 0, 0, 12),
            i(0x15, 2, 0, 0x8100),
            i(0x15, 1, 0, 0x88a8),
            i(0x15, 0, 4, 0x9100),
            i(0x28, 0, 0, 14),
            i(0x54, 0, 0, 0x0fff),
            i(0x15, 0, 1, 100),
            i(RET_K, 0, 0, 262144),
            i(RET_K, 0, 0, 0),
        ];
        let p = verify(&prog).unwrap();
        let untagged: Vec<u8> = (0..60).collect();
        assert!(!p.matches(&untagged, 60));
        assert!(p.matches_frame(&WireFrame::new(&untagged, Some(0x6064)), 64));
        assert!(!p.matches_frame(&WireFrame::new(&untagged, Some(0x6065)), 64));
    }
}
