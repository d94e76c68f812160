// SPDX-License-Identifier: MIT
//! The SFP+ module in the 82599's cage, as its driver sees it: a serial ID
//! EEPROM at I2C address 0xA0 (SFF-8472) read by bit-banging the MAC's
//! `I2CCTL` register (clock and data out, the lines' levels in). The module
//! is a passive direct-attach copper cable (SFP+ DA, "twinax"): the kind
//! every 82599 driver accepts from any vendor, with no optics to model.
//!
//! The bus is open drain: a line is low when either side pulls it low. The
//! module is an I2C slave that follows the master's edges: START and STOP
//! (data changing while the clock is high), bits sampled on the rising
//! clock edge, its own ACKs and data driven after the falling edge.

/// `I2CCTL` bits on the 82598/82599 (Linux `IXGBE_I2C_*_8259X`).
pub const CLK_IN: u32 = 1 << 0;
/// Clock output (the master releases SCL when set).
pub const CLK_OUT: u32 = 1 << 1;
/// Data line level.
pub const DATA_IN: u32 = 1 << 2;
/// Data output (the master releases SDA when set).
pub const DATA_OUT: u32 = 1 << 3;

/// The module's serial ID address (8-bit form).
const ADDR_A0: u8 = 0xA0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Not addressed (after STOP, a NACK or an address that is not ours).
    Idle,
    /// Receiving the address byte after a START.
    Addr,
    /// Receiving the byte offset.
    Offset,
    /// Receiving data bytes to write (the ID EEPROM ignores them).
    Write,
    /// Sending bytes from the offset on.
    Read,
}

/// An SFP+ module's I2C side.
pub struct Sfp {
    id: [u8; 256],
    scl: bool,
    sda_master: bool,
    sda_slave: bool,
    mode: Mode,
    bit: u8,
    shift: u8,
    acking: bool,
    then_read: bool,
    master_acked: bool,
    tx: u8,
    pointer: u8,
    /// Bytes the master read (for tests).
    pub bytes_read: u64,
}

impl Sfp {
    /// A passive SFP+ direct-attach cable (SFF-8472 serial ID).
    pub fn passive_da() -> Self {
        let mut id = [0u8; 256];
        id[0] = 0x03; // identifier: SFP/SFP+
        id[1] = 0x04; // extended identifier: serial ID module
        id[2] = 0x21; // connector: copper pigtail
        id[8] = 0x04; // SFP+ cable technology: passive cable
        id[12] = 0x67; // nominal bit rate, 100 MBd units (10.3 GBd)
        id[18] = 3; // length (copper), m
        id[20..36].copy_from_slice(b"HPCAP-MODEL     ");
        // Vendor OUI 37..39: none (00:00:00), an unbranded cable.
        id[40..56].copy_from_slice(b"SFP-10G-DA-3M   ");
        id[60] = 0x01; // passive cable compliance: SFF-8431 appendix E
        id[63] = checksum(&id[0..63]);
        id[68..84].copy_from_slice(b"HPCAPMODEL000001");
        id[84..92].copy_from_slice(b"26112800");
        id[95] = checksum(&id[64..95]);
        Sfp {
            id,
            scl: true,
            sda_master: true,
            sda_slave: true,
            mode: Mode::Idle,
            bit: 0,
            shift: 0,
            acking: false,
            then_read: false,
            master_acked: false,
            tx: 0,
            pointer: 0,
            bytes_read: 0,
        }
    }

    /// The serial ID bytes.
    pub fn id(&self) -> &[u8; 256] {
        &self.id
    }

    fn sda(&self) -> bool {
        self.sda_master && self.sda_slave
    }

    /// The `I2CCTL` bits the lines give (the master's outputs are kept by
    /// the caller): SCL as driven (the module never stretches the clock),
    /// SDA as both sides pull it.
    pub fn lines(&self) -> u32 {
        (if self.scl { CLK_IN } else { 0 }) | (if self.sda() { DATA_IN } else { 0 })
    }

    /// The master wrote `I2CCTL`.
    pub fn write(&mut self, v: u32) {
        let scl = v & CLK_OUT != 0;
        let sda_m = v & DATA_OUT != 0;
        // Data changing while the clock stays high: START or STOP.
        if scl && self.scl && sda_m != self.sda_master {
            let before = self.sda();
            self.sda_master = sda_m;
            let after = self.sda();
            if before && !after {
                self.start();
            } else if !before && after {
                self.stop();
            }
            return;
        }
        self.sda_master = sda_m;
        if scl != self.scl {
            self.scl = scl;
            if scl {
                self.rising();
            } else {
                self.falling();
            }
        }
    }

    fn start(&mut self) {
        self.mode = Mode::Addr;
        self.bit = 0;
        self.shift = 0;
        self.acking = false;
        self.then_read = false;
        self.sda_slave = true;
    }

    fn stop(&mut self) {
        self.mode = Mode::Idle;
        self.acking = false;
        self.sda_slave = true;
    }

    fn rising(&mut self) {
        let line = self.sda();
        match self.mode {
            Mode::Addr | Mode::Offset | Mode::Write if !self.acking && self.bit < 8 => {
                self.shift = self.shift << 1 | u8::from(line);
                self.bit += 1;
            }
            Mode::Read if self.bit == 8 => self.master_acked = !line,
            _ => {}
        }
    }

    fn falling(&mut self) {
        match self.mode {
            Mode::Idle => {}
            Mode::Addr | Mode::Offset | Mode::Write => {
                if self.acking {
                    self.acking = false;
                    self.sda_slave = true;
                    self.bit = 0;
                    self.shift = 0;
                    if self.then_read {
                        self.mode = Mode::Read;
                        self.load();
                    }
                } else if self.bit == 8 {
                    let ack = match self.mode {
                        Mode::Addr => {
                            let ours = self.shift & 0xFE == ADDR_A0;
                            if ours {
                                if self.shift & 1 != 0 {
                                    self.then_read = true;
                                } else {
                                    self.mode = Mode::Offset;
                                }
                            }
                            ours
                        }
                        Mode::Offset => {
                            self.pointer = self.shift;
                            self.mode = Mode::Write;
                            true
                        }
                        _ => {
                            self.pointer = self.pointer.wrapping_add(1);
                            true
                        }
                    };
                    if ack {
                        self.acking = true;
                        self.sda_slave = false;
                    } else {
                        self.mode = Mode::Idle;
                    }
                }
            }
            Mode::Read => {
                if self.bit < 8 {
                    self.bit += 1;
                    self.sda_slave = self.bit == 8 || self.tx >> (7 - self.bit) & 1 != 0;
                } else if self.master_acked {
                    self.load();
                } else {
                    self.mode = Mode::Idle;
                    self.sda_slave = true;
                }
            }
        }
    }

    /// The next byte to send, its first bit on the line.
    fn load(&mut self) {
        self.tx = self.id[usize::from(self.pointer)];
        self.pointer = self.pointer.wrapping_add(1);
        self.bytes_read += 1;
        self.bit = 0;
        self.master_acked = false;
        self.sda_slave = self.tx & 0x80 != 0;
    }
}

/// SFF-8472 check code: the low 8 bits of the sum.
fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bit-banging master as Linux's `ixgbe_read_i2c_byte_generic` does it.
    struct Master<'a> {
        sfp: &'a mut Sfp,
        ctl: u32,
    }

    impl Master<'_> {
        fn set(&mut self, bit: u32, on: bool) {
            if on {
                self.ctl |= bit;
            } else {
                self.ctl &= !bit;
            }
            self.sfp.write(self.ctl);
        }
        fn data_in(&self) -> bool {
            self.sfp.lines() & DATA_IN != 0
        }
        fn start(&mut self) {
            self.set(DATA_OUT, true);
            self.set(CLK_OUT, true);
            self.set(DATA_OUT, false);
            self.set(CLK_OUT, false);
        }
        fn stop(&mut self) {
            self.set(DATA_OUT, false);
            self.set(CLK_OUT, true);
            self.set(DATA_OUT, true);
        }
        fn out_bit(&mut self, b: bool) {
            self.set(DATA_OUT, b);
            if b {
                assert!(self.data_in(), "data not released");
            }
            self.set(CLK_OUT, true);
            self.set(CLK_OUT, false);
        }
        fn out_byte(&mut self, v: u8) -> bool {
            for i in (0..8).rev() {
                self.out_bit(v >> i & 1 != 0);
            }
            self.set(DATA_OUT, true);
            self.set(CLK_OUT, true);
            let ack = !self.data_in();
            self.set(CLK_OUT, false);
            ack
        }
        fn in_byte(&mut self) -> u8 {
            let mut v = 0;
            for _ in 0..8 {
                self.set(CLK_OUT, true);
                v = v << 1 | u8::from(self.data_in());
                self.set(CLK_OUT, false);
            }
            v
        }
        fn read(&mut self, dev: u8, off: u8) -> Option<u8> {
            self.start();
            if !self.out_byte(dev) || !self.out_byte(off) {
                self.stop();
                return None;
            }
            self.start();
            if !self.out_byte(dev | 1) {
                self.stop();
                return None;
            }
            let v = self.in_byte();
            self.out_bit(true); // NACK: one byte
            self.stop();
            Some(v)
        }
    }

    #[test]
    fn bit_banged_reads_return_the_serial_id() {
        let mut sfp = Sfp::passive_da();
        let want = *sfp.id();
        let mut m = Master {
            sfp: &mut sfp,
            ctl: CLK_OUT | DATA_OUT,
        };
        for off in [0u8, 3, 6, 8, 12, 0x25, 0x26, 0x27, 63, 0xFF] {
            assert_eq!(
                m.read(0xA0, off),
                Some(want[usize::from(off)]),
                "byte {off:#x}"
            );
        }
        assert_eq!(want[0], 0x03, "an SFP");
        assert_eq!(want[8], 0x04, "a passive DA cable");
        assert_eq!(checksum(&want[0..63]), want[63]);
        // The diagnostics page (0xA2) is not implemented: no ACK.
        assert_eq!(m.read(0xA2, 0), None);
        assert_eq!(m.read(0xA0, 1), Some(want[1]), "the bus recovers");
    }
}
