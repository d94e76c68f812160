// SPDX-License-Identifier: MIT
//! A minimal PCI function that proves the transport end to end: registers
//! that read back, a DMA engine that reads guest memory and writes the
//! complement of what it read next to it, and an MSI-X interrupt on
//! completion. The VM test drives it with tests/vm/testdev (a tiny guest
//! module) and checks each step.
//!
//! BAR0 (4 KiB) registers, 32-bit:
//! | offset | name | |
//! |---|---|---|
//! | 0x00 | ID | reads [`TESTDEV_ID`] |
//! | 0x04 | SCRATCH | read/write |
//! | 0x08 | DMA_LO | guest address, low half |
//! | 0x0c | DMA_HI | guest address, high half |
//! | 0x10 | DMA_LEN | bytes to copy (<= 2048) |
//! | 0x14 | DOORBELL | write V: read DMA_LEN bytes at DMA, write their complement at DMA + DMA_LEN, set STATUS, raise MSI-X vector V |
//! | 0x18 | STATUS | 0 idle, 1 done, 2 DMA failed (not bus master or not guest memory) |
//! | 0x1c | IRQS | MSI-X interrupts raised so far |
//!
//! The MSI-X table (2 vectors) is at 0x800, the PBA at 0xc00.

use crate::pci::{ConfigSpace, Identity, MsixLayout};
use crate::transport::{PciFunction, Platform};

/// Value of the ID register ("HPCP").
pub const TESTDEV_ID: u32 = 0x4850_4350;
/// PCI vendor:device of the test function (QEMU's test vendor ID).
pub const TESTDEV_PCI: (u16, u16) = (0x1234, 0x4850);

const ID: u64 = 0x00;
const SCRATCH: u64 = 0x04;
const DMA_LO: u64 = 0x08;
const DMA_HI: u64 = 0x0c;
const DMA_LEN: u64 = 0x10;
const DOORBELL: u64 = 0x14;
const STATUS: u64 = 0x18;
const IRQS: u64 = 0x1c;
const MAX_DMA: u32 = 2048;

/// The test function.
pub struct TestDev {
    cfg: ConfigSpace,
    scratch: u32,
    dma: u64,
    len: u32,
    status: u32,
    irqs: u32,
}

impl Default for TestDev {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDev {
    /// A fresh function.
    pub fn new() -> Self {
        TestDev {
            cfg: ConfigSpace::new(
                Identity {
                    vendor: TESTDEV_PCI.0,
                    device: TESTDEV_PCI.1,
                    subsys_vendor: TESTDEV_PCI.0,
                    subsys: 1,
                    revision: 1,
                    class: 0xff0000,
                },
                [4096, 0, 0, 0, 0, 0],
                MsixLayout {
                    vectors: 2,
                    bar: 0,
                    table: 0x800,
                    pba: 0xc00,
                },
            ),
            scratch: 0,
            dma: 0,
            len: 0,
            status: 0,
            irqs: 0,
        }
    }

    fn doorbell(&mut self, vector: u32, p: &mut Platform) {
        let len = self.len.min(MAX_DMA) as usize;
        let mut buf = vec![0u8; len];
        let ok = self.cfg.bus_master() && p.mem.read(self.dma, &mut buf).is_ok() && {
            buf.iter_mut().for_each(|b| *b = !*b);
            p.mem.write(self.dma + len as u64, &buf).is_ok()
        };
        self.status = if ok { 1 } else { 2 };
        if self.cfg.bus_master() {
            p.irq.raise(vector as usize);
            self.irqs += 1;
        }
    }
}

impl PciFunction for TestDev {
    fn bar_sizes(&self) -> [u64; 6] {
        self.cfg.bar_sizes()
    }

    fn msix_vectors(&self) -> u32 {
        2
    }

    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.cfg.read(offset, data);
    }

    fn config_write(&mut self, offset: u64, data: &[u8], _p: &mut Platform) {
        self.cfg.write(offset, data);
    }

    fn bar_read(&mut self, _bar: u32, offset: u64, data: &mut [u8], _p: &mut Platform) {
        let v = match offset & !3 {
            ID => TESTDEV_ID,
            SCRATCH => self.scratch,
            DMA_LO => self.dma as u32,
            DMA_HI => (self.dma >> 32) as u32,
            DMA_LEN => self.len,
            STATUS => self.status,
            IRQS => self.irqs,
            _ => 0,
        };
        let b = v.to_le_bytes();
        let at = (offset & 3) as usize;
        for (i, d) in data.iter_mut().enumerate() {
            *d = b.get(at + i).copied().unwrap_or(0);
        }
    }

    fn bar_write(&mut self, _bar: u32, offset: u64, data: &[u8], p: &mut Platform) {
        let Ok(b) = <[u8; 4]>::try_from(data) else {
            return; // registers are 32-bit
        };
        let v = u32::from_le_bytes(b);
        match offset {
            SCRATCH => self.scratch = v,
            DMA_LO => self.dma = (self.dma & !0xffff_ffff) | u64::from(v),
            DMA_HI => self.dma = (self.dma & 0xffff_ffff) | u64::from(v) << 32,
            DMA_LEN => self.len = v,
            DOORBELL => self.doorbell(v, p),
            _ => {}
        }
    }

    fn reset(&mut self, _p: &mut Platform) {
        let cfg = std::mem::replace(&mut self.cfg, TestDev::new().cfg);
        *self = TestDev {
            cfg,
            ..TestDev::new()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(d: &mut TestDev, p: &mut Platform, off: u64, v: u32) {
        d.bar_write(0, off, &v.to_le_bytes(), p);
    }

    fn r(d: &mut TestDev, p: &mut Platform, off: u64) -> u32 {
        let mut b = [0u8; 4];
        d.bar_read(0, off, &mut b, p);
        u32::from_le_bytes(b)
    }

    #[test]
    fn registers_dma_and_interrupt() {
        let mut p = Platform::for_tests(0x100000, 8192, 2);
        let mut d = TestDev::new();
        assert_eq!(r(&mut d, &mut p, ID), TESTDEV_ID);
        w(&mut d, &mut p, SCRATCH, 0xdead_beef);
        assert_eq!(r(&mut d, &mut p, SCRATCH), 0xdead_beef);
        p.mem.write(0x100100, &[1, 2, 3, 0xff]).unwrap();
        w(&mut d, &mut p, DMA_LO, 0x100100);
        w(&mut d, &mut p, DMA_HI, 0);
        w(&mut d, &mut p, DMA_LEN, 4);
        // Not a bus master yet: no DMA, no interrupt.
        w(&mut d, &mut p, DOORBELL, 1);
        assert_eq!(r(&mut d, &mut p, STATUS), 2);
        assert_eq!(p.irq.raised, vec![0, 0]);
        d.config_write(4, &[0x06, 0], &mut p);
        w(&mut d, &mut p, DOORBELL, 1);
        assert_eq!(r(&mut d, &mut p, STATUS), 1);
        let mut back = [0u8; 4];
        p.mem.read(0x100104, &mut back).unwrap();
        assert_eq!(back, [0xfe, 0xfd, 0xfc, 0x00]);
        assert_eq!(p.irq.raised, vec![0, 1]);
        // Outside guest memory: a failed DMA, reported.
        w(&mut d, &mut p, DMA_HI, 1);
        w(&mut d, &mut p, DOORBELL, 0);
        assert_eq!(r(&mut d, &mut p, STATUS), 2);
    }
}
