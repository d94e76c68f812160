// SPDX-License-Identifier: MIT
//! The NVM's shadow RAM as the PF reads it through `GLNVM_SRCTL` and
//! `GLNVM_SRDATA`: 4 KB (2048 words, `GLNVM_GENS.SR_SIZE` = 2) with a
//! valid control word and a software checksum that Linux's
//! `i40e_validate_nvm_checksum` accepts.

/// Words of shadow RAM (4 KB).
pub const WORDS: usize = 2048;
/// `GLNVM_GENS.SR_SIZE` for [`WORDS`]: 2^n KB.
pub const SR_SIZE_LOG2_KB: u32 = 2;

/// Word offsets (`I40E_SR_*`).
pub mod word {
    /// Control word: bits 7:6 = 01 marks a valid NVM.
    pub const CONTROL: usize = 0x00;
    /// PBA flags (0xFAFA when a PBA block is present).
    pub const PBA_FLAGS: usize = 0x15;
    /// Boot configuration pointer (OEM version at +0x83).
    pub const BOOT_CONFIG_PTR: usize = 0x17;
    /// OEM version block pointer (0xFFFF: none, the Intel version applies).
    pub const OEM_VERSION_PTR: usize = 0x1B;
    /// NVM image version (major in 15:12 .. minor in 7:0).
    pub const DEV_STARTER_VERSION: usize = 0x18;
    /// Wake-on-LAN disabled, one bit per port.
    pub const WAKE_ON_LAN: usize = 0x19;
    /// EETRACK id, low word.
    pub const EETRACK_LO: usize = 0x2D;
    /// EETRACK id, high word.
    pub const EETRACK_HI: usize = 0x2E;
    /// VPD module pointer (words skipped by the checksum).
    pub const VPD_PTR: usize = 0x2F;
    /// PCIe alternate auto-load module pointer (skipped by the checksum).
    pub const PCIE_ALT_PTR: usize = 0x3E;
    /// Software checksum.
    pub const SW_CHECKSUM: usize = 0x3F;
}

/// The control word's valid marker (`I40E_SR_CONTROL_WORD_1` = 01).
pub const CONTROL_VALID: u16 = 1 << 6;
/// The checksum makes the sum of the covered words equal this.
pub const CHECKSUM_BASE: u16 = 0xBABA;
/// Module sizes the checksum skips (bytes).
const MODULE_MAX_BYTES: usize = 1024;

/// GLNVM_SRCTL fields.
pub mod srctl {
    /// Word address (bits 28:14).
    pub const ADDR_SHIFT: u32 = 14;
    /// Address mask after shifting.
    pub const ADDR_MASK: u32 = 0x7fff;
    /// Write (else read).
    pub const WRITE: u32 = 1 << 29;
    /// Start the access.
    pub const START: u32 = 1 << 30;
    /// The access is done (and the interface idle).
    pub const DONE: u32 = 1 << 31;
}

/// The shadow RAM and its register interface.
#[derive(Debug, Clone)]
pub struct ShadowRam {
    words: Vec<u16>,
    srctl: u32,
    srdata: u32,
}

impl Default for ShadowRam {
    fn default() -> Self {
        Self::new()
    }
}

impl ShadowRam {
    /// A shadow RAM image: valid control word, NVM version 6.01, EETRACK
    /// 0x80004850, no OEM version block, no VPD or alternate module,
    /// Wake-on-LAN disabled, checksum set.
    pub fn new() -> Self {
        let mut w = vec![0u16; WORDS];
        w[word::CONTROL] = CONTROL_VALID;
        w[word::DEV_STARTER_VERSION] = 0x6001;
        w[word::OEM_VERSION_PTR] = 0xFFFF;
        w[word::WAKE_ON_LAN] = 0x0001;
        w[word::EETRACK_LO] = 0x4850;
        w[word::EETRACK_HI] = 0x8000;
        w[word::VPD_PTR] = 0xFFFF;
        w[word::PCIE_ALT_PTR] = 0xFFFF;
        let mut s = ShadowRam {
            words: w,
            srctl: srctl::DONE,
            srdata: 0,
        };
        s.words[word::SW_CHECKSUM] = s.checksum();
        s
    }

    /// The checksum as Linux computes it (`i40e_calc_nvm_checksum`): every
    /// word but the checksum itself and the VPD and PCIe-alternate
    /// modules, subtracted from 0xBABA.
    pub fn checksum(&self) -> u16 {
        let module = |ptr: usize| {
            let start = usize::from(self.words[ptr]);
            start..start + MODULE_MAX_BYTES / 2
        };
        let (vpd, alt) = (module(word::VPD_PTR), module(word::PCIE_ALT_PTR));
        let sum = self
            .words
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != word::SW_CHECKSUM && !vpd.contains(i) && !alt.contains(i))
            .fold(0u16, |a, (_, &w)| a.wrapping_add(w));
        CHECKSUM_BASE.wrapping_sub(sum)
    }

    /// A word (0 beyond the end).
    pub fn word(&self, i: usize) -> u16 {
        self.words.get(i).copied().unwrap_or(0)
    }

    /// Overwrites a word (tests: a corrupt image).
    pub fn set_word(&mut self, i: usize, v: u16) {
        if let Some(w) = self.words.get_mut(i) {
            *w = v;
        }
    }

    /// Reads GLNVM_SRCTL.
    pub fn read_srctl(&self) -> u32 {
        self.srctl
    }

    /// Reads GLNVM_SRDATA.
    pub fn read_srdata(&self) -> u32 {
        self.srdata
    }

    /// Writes GLNVM_SRDATA (the data of a following write access).
    pub fn write_srdata(&mut self, v: u32) {
        self.srdata = v;
    }

    /// Writes GLNVM_SRCTL: a START runs the access at once (DONE is set
    /// when the register is read back).
    pub fn write_srctl(&mut self, v: u32) {
        if v & srctl::START == 0 {
            self.srctl = (v & !srctl::DONE) | (self.srctl & srctl::DONE);
            return;
        }
        let addr = ((v >> srctl::ADDR_SHIFT) & srctl::ADDR_MASK) as usize;
        if v & srctl::WRITE != 0 {
            // The shadow RAM is writable; the flash behind it is not modelled.
            let data = (self.srdata & 0xffff) as u16;
            self.set_word(addr, data);
        } else {
            self.srdata = (self.srdata & 0xffff) | (u32::from(self.word(addr)) << 16);
        }
        self.srctl = (v & !srctl::START) | srctl::DONE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a word the way `i40e_read_nvm_word_srctl` does.
    fn read(s: &mut ShadowRam, at: u16) -> u16 {
        assert_ne!(s.read_srctl() & srctl::DONE, 0, "idle before the access");
        s.write_srctl((u32::from(at) << srctl::ADDR_SHIFT) | srctl::START);
        assert_ne!(s.read_srctl() & srctl::DONE, 0);
        (s.read_srdata() >> 16) as u16
    }

    #[test]
    fn control_word_and_checksum_validate_like_linux() {
        let mut s = ShadowRam::new();
        let control = read(&mut s, 0);
        assert_eq!(control & (3 << 6), 1 << 6, "control word marks a valid NVM");
        // i40e_calc_nvm_checksum over every word read through the registers.
        let vpd = u32::from(read(&mut s, word::VPD_PTR as u16));
        let alt = u32::from(read(&mut s, word::PCIE_ALT_PTR as u16));
        let mut sum = 0u16;
        for i in 0..WORDS as u32 {
            let w = read(&mut s, i as u16);
            if i == word::SW_CHECKSUM as u32
                || (vpd..vpd + 512).contains(&i)
                || (alt..alt + 512).contains(&i)
            {
                continue;
            }
            sum = sum.wrapping_add(w);
        }
        assert_eq!(0xBABAu16.wrapping_sub(sum), read(&mut s, 0x3F));
        assert_eq!(read(&mut s, 0x18), 0x6001);
        // i40e_get_oem_version: no OEM block, so Linux reports 6.01 and
        // the EETRACK id rather than an OEM version.
        assert_eq!(read(&mut s, 0x1B), 0xFFFF);
    }

    #[test]
    fn a_corrupt_word_breaks_the_checksum() {
        let mut s = ShadowRam::new();
        let good = s.word(word::SW_CHECKSUM);
        s.set_word(100, 1);
        assert_ne!(s.checksum(), good);
    }

    #[test]
    fn writes_go_to_the_shadow_ram() {
        let mut s = ShadowRam::new();
        s.write_srdata(0xBEEF);
        s.write_srctl((7 << srctl::ADDR_SHIFT) | srctl::WRITE | srctl::START);
        assert_eq!(read(&mut s, 7), 0xBEEF);
        assert_eq!(read(&mut s, 5000), 0, "beyond the end reads 0");
    }
}
