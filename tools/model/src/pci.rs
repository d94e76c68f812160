// SPDX-License-Identifier: MIT
//! PCI configuration space of a modelled function: a type-0 header with
//! memory BARs (sized the standard way: writable bits are the address bits
//! above the size), the command register, and an MSI-X capability whose
//! table and PBA live in a BAR (QEMU emulates the table itself).
//!
//! [`Registers`] is what a NIC model with one 32-bit register BAR (BAR0)
//! implements; one blanket adapter turns it into a
//! [`PciFunction`](crate::transport::PciFunction).

use crate::transport::{PciFunction, Platform};

/// PCI_COMMAND bit: the function may master the bus (DMA).
pub const COMMAND_MASTER: u16 = 1 << 2;
/// PCI_COMMAND bit: memory space decoding.
pub const COMMAND_MEMORY: u16 = 1 << 1;

const COMMAND: usize = 0x04;
const STATUS: usize = 0x06;
const BAR0: usize = 0x10;
const CAP_PTR: usize = 0x34;
const STATUS_CAP_LIST: u16 = 1 << 4;
const CAP_ID_MSIX: u8 = 0x11;
const CAP_ID_MSI: u8 = 0x05;
/// Where [`ConfigSpace::with_msi_and_intx`] puts the MSI capability.
const MSI_CAP: usize = 0x50;
const INTERRUPT_PIN: usize = 0x3d;

/// Identity and layout of a function.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Subsystem vendor ID.
    pub subsys_vendor: u16,
    /// Subsystem ID.
    pub subsys: u16,
    /// Revision.
    pub revision: u8,
    /// Class code (base, sub, programming interface), e.g. 0x020000 Ethernet.
    pub class: u32,
}

/// Where the MSI-X table and PBA are.
#[derive(Debug, Clone, Copy)]
pub struct MsixLayout {
    /// Number of vectors.
    pub vectors: u16,
    /// BAR of the table and PBA.
    pub bar: u8,
    /// Offset of the table in that BAR.
    pub table: u32,
    /// Offset of the PBA in that BAR.
    pub pba: u32,
}

/// A function's configuration space.
pub struct ConfigSpace {
    bytes: [u8; 256],
    /// Per byte: which bits the guest may write.
    wmask: [u8; 256],
    bar_sizes: [u64; 6],
}

impl ConfigSpace {
    /// A header with 32-bit non-prefetchable memory BARs of the given sizes
    /// (0 = absent) and an MSI-X capability.
    pub fn new(id: Identity, bar_sizes: [u64; 6], msix: MsixLayout) -> Self {
        let mut c = ConfigSpace {
            bytes: [0; 256],
            wmask: [0; 256],
            bar_sizes,
        };
        c.put16(0x00, id.vendor);
        c.put16(0x02, id.device);
        c.bytes[0x08] = id.revision;
        c.bytes[0x09] = (id.class & 0xff) as u8;
        c.bytes[0x0a] = (id.class >> 8 & 0xff) as u8;
        c.bytes[0x0b] = (id.class >> 16 & 0xff) as u8;
        c.put16(0x2c, id.subsys_vendor);
        c.put16(0x2e, id.subsys);
        c.put16(STATUS, STATUS_CAP_LIST);
        // Command: memory space, bus master, INTx disable.
        c.wmask[COMMAND] = 0x06;
        c.wmask[COMMAND + 1] = 0x04;
        for (i, &size) in bar_sizes.iter().enumerate() {
            if size > 0 {
                assert!(size.is_power_of_two() && size >= 4096, "BAR{i} size {size}");
                let mask = !(size as u32 - 1);
                let at = BAR0 + 4 * i;
                for (k, b) in mask.to_le_bytes().iter().enumerate() {
                    c.wmask[at + k] = *b;
                }
            }
        }
        c.bytes[0x3c] = 0; // interrupt line (writable, unused)
        c.wmask[0x3c] = 0xff;
        // Capabilities: MSI-X only, at 0x70. (A PCI Express capability
        // would need the 4 KiB extended space, which QEMU's vfio-pci then
        // parses; conventional PCI on q35's root bus is enough here.)
        c.bytes[CAP_PTR] = 0x70;
        c.bytes[0x70] = CAP_ID_MSIX;
        c.bytes[0x71] = 0;
        c.put16(0x72, msix.vectors - 1);
        c.wmask[0x73] = 0xc0; // enable, function mask
        c.put32(0x74, msix.table | u32::from(msix.bar));
        c.put32(0x78, msix.pba | u32::from(msix.bar));
        c
    }

    /// Adds INTx (pin A) and an MSI capability (one message, 64-bit
    /// addresses; at 0x50, before MSI-X, as on the XL710) for a function
    /// that falls back to them when MSI-X cannot be had. QEMU emulates the
    /// MSI capability's registers itself, as it does MSI-X's table.
    pub fn with_msi_and_intx(mut self) -> Self {
        self.bytes[INTERRUPT_PIN] = 1;
        let next = self.bytes[CAP_PTR];
        self.bytes[CAP_PTR] = MSI_CAP as u8;
        self.bytes[MSI_CAP] = CAP_ID_MSI;
        self.bytes[MSI_CAP + 1] = next;
        // Message control: 64-bit capable, one message (MMC 0).
        self.put16(MSI_CAP + 2, 1 << 7);
        // Enable and MME; address and data.
        self.wmask[MSI_CAP + 2] = 0x71;
        for at in MSI_CAP + 4..MSI_CAP + 14 {
            self.wmask[at] = 0xff;
        }
        self.wmask[MSI_CAP + 4] = 0xfc;
        self
    }

    fn put16(&mut self, at: usize, v: u16) {
        self.bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn put32(&mut self, at: usize, v: u32) {
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Reads config space; bytes beyond 256 read as 0xff.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| self.bytes.get(o + i))
                .copied()
                .unwrap_or(0xff);
        }
    }

    /// Writes config space through the write mask.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(o) = usize::try_from(offset) else {
            return;
        };
        for (i, &b) in data.iter().enumerate() {
            let a = o + i;
            if a < 256 {
                self.bytes[a] = (self.bytes[a] & !self.wmask[a]) | (b & self.wmask[a]);
            }
        }
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.bytes[COMMAND], self.bytes[COMMAND + 1]])
    }

    /// Whether the function may do DMA.
    pub fn bus_master(&self) -> bool {
        self.command() & COMMAND_MASTER != 0
    }

    /// BAR sizes.
    pub fn bar_sizes(&self) -> [u64; 6] {
        self.bar_sizes
    }
}

/// A function whose registers are 32-bit words in BAR0 and whose config
/// space is a [`ConfigSpace`]: the models of real NICs. The blanket
/// [`PciFunction`] impl below does the vfio-user glue once: 4-byte
/// accesses go to one register, 8-byte ones to two (low word first),
/// anything else and other BARs (the MSI-X BAR, which QEMU emulates) read
/// as 0 and ignore writes.
pub trait Registers: Send {
    /// The config space.
    fn config_space(&self) -> &ConfigSpace;
    /// The config space, to write.
    fn config_space_mut(&mut self) -> &mut ConfigSpace;
    /// Number of MSI-X vectors.
    fn vectors(&self) -> u32;
    /// A 32-bit register read at a dword-aligned BAR0 offset.
    fn reg_read(&mut self, off: u64) -> u32;
    /// A 32-bit register write at a dword-aligned BAR0 offset.
    fn reg_write(&mut self, off: u64, v: u32, p: &mut Platform);
    /// A function-level reset from QEMU.
    fn function_reset(&mut self, p: &mut Platform);
}

impl<T: Registers> PciFunction for T {
    fn bar_sizes(&self) -> [u64; 6] {
        self.config_space().bar_sizes()
    }

    fn msix_vectors(&self) -> u32 {
        self.vectors()
    }

    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        self.config_space().read(offset, data);
    }

    fn config_write(&mut self, offset: u64, data: &[u8], _p: &mut Platform) {
        self.config_space_mut().write(offset, data);
    }

    fn bar_read(&mut self, bar: u32, offset: u64, data: &mut [u8], _p: &mut Platform) {
        if bar != 0 {
            data.fill(0);
            return;
        }
        match data.len() {
            4 => data.copy_from_slice(&self.reg_read(offset & !3).to_le_bytes()),
            8 => {
                let lo = u64::from(self.reg_read(offset & !7));
                let hi = u64::from(self.reg_read((offset & !7) + 4));
                data.copy_from_slice(&(hi << 32 | lo).to_le_bytes());
            }
            _ => data.fill(0),
        }
    }

    fn bar_write(&mut self, bar: u32, offset: u64, data: &[u8], p: &mut Platform) {
        if bar != 0 {
            return;
        }
        if let Ok(b) = <[u8; 4]>::try_from(data) {
            self.reg_write(offset & !3, u32::from_le_bytes(b), p);
        } else if let Ok(b) = <[u8; 8]>::try_from(data) {
            let v = u64::from_le_bytes(b);
            self.reg_write(offset & !7, v as u32, p);
            self.reg_write((offset & !7) + 4, (v >> 32) as u32, p);
        }
    }

    fn reset(&mut self, p: &mut Platform) {
        self.function_reset(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> ConfigSpace {
        ConfigSpace::new(
            Identity {
                vendor: 0x8086,
                device: 0x154c,
                subsys_vendor: 0x8086,
                subsys: 0,
                revision: 1,
                class: 0x020000,
            },
            [0x10000, 0, 0, 0x4000, 0, 0],
            MsixLayout {
                vectors: 5,
                bar: 3,
                table: 0,
                pba: 0x2000,
            },
        )
    }

    fn r32(c: &ConfigSpace, at: u64) -> u32 {
        let mut b = [0u8; 4];
        c.read(at, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn ids_class_and_bar_sizing() {
        let mut c = space();
        assert_eq!(r32(&c, 0), 0x154c_8086);
        assert_eq!(r32(&c, 8) >> 8, 0x020000);
        c.write(0x10, &u32::MAX.to_le_bytes());
        assert_eq!(r32(&c, 0x10), 0xffff_0000, "64 KiB BAR0 sizes as such");
        c.write(0x14, &u32::MAX.to_le_bytes());
        assert_eq!(r32(&c, 0x14), 0, "absent BAR1");
        c.write(0x1c, &0xfebf_0000u32.to_le_bytes());
        assert_eq!(r32(&c, 0x1c), 0xfebf_0000);
        c.write(0, &[0; 4]);
        assert_eq!(r32(&c, 0), 0x154c_8086, "IDs are read-only");
    }

    #[test]
    fn msi_capability_and_interrupt_pin_before_msix() {
        let c = space().with_msi_and_intx();
        assert_eq!(c.bytes[INTERRUPT_PIN], 1, "INTA");
        let mut ids = Vec::new();
        let mut at = c.bytes[CAP_PTR] as usize;
        while at != 0 {
            ids.push((at, c.bytes[at]));
            at = c.bytes[at + 1] as usize;
        }
        assert_eq!(ids, vec![(0x50, CAP_ID_MSI), (0x70, CAP_ID_MSIX)]);
        let ctl = u16::from_le_bytes([c.bytes[0x52], c.bytes[0x53]]);
        assert_eq!(ctl & 0x0e, 0, "one message");
        assert_ne!(ctl & 0x80, 0, "64-bit");
    }

    #[test]
    fn master_bit_and_msix_capability() {
        let mut c = space();
        assert!(!c.bus_master());
        c.write(4, &(COMMAND_MASTER | COMMAND_MEMORY).to_le_bytes());
        assert!(c.bus_master());
        // Walk the capability list to MSI-X.
        let mut at = c.bytes[CAP_PTR] as usize;
        while c.bytes[at] != CAP_ID_MSIX {
            at = c.bytes[at + 1] as usize;
            assert_ne!(at, 0, "no MSI-X capability");
        }
        assert_eq!(
            u16::from_le_bytes([c.bytes[at + 2], c.bytes[at + 3]]) & 0x7ff,
            4
        );
        assert_eq!(r32(&c, at as u64 + 4), 3, "table in BAR3 at 0");
        assert_eq!(r32(&c, at as u64 + 8), 0x2003, "PBA in BAR3 at 0x2000");
    }
}
