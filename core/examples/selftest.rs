// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Prints the core's known-answer line exactly as `hpcap.ko` logs it at load,
//! so the VM test can compare the two.

fn main() {
    let mut scratch = vec![0u8; hpcap_core::pcapng::FILE_HEADER_LEN];
    match hpcap_core::selftest::file_header_digest(&mut scratch) {
        Some((len, digest)) => {
            println!("core self-test: file header {len} bytes fnv1a={digest:#010x}")
        }
        None => {
            eprintln!("selftest: the file header does not fit");
            std::process::exit(1);
        }
    }
}
