// SPDX-License-Identifier: MIT
//! Generates the userspace ABI bindings from `include/hpcap.h` with bindgen.
//!
//! The structures and constants of the C header become `hpcap::sys`; a test
//! (`tests/abi.rs`) checks them against the core's hand-written mirror
//! (`hpcap_core::abi`) field by field. libclang is found through
//! `LIBCLANG_PATH`, defaulting to Debian's LLVM 19 location.

use std::env;
use std::path::PathBuf;

fn main() {
    let header = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("../../include/hpcap.h");
    println!("cargo:rerun-if-changed={}", header.display());
    println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");
    if env::var_os("LIBCLANG_PATH").is_none() {
        for dir in [
            "/usr/lib/llvm-19/lib",
            "/usr/lib/llvm-18/lib",
            "/usr/lib/llvm-17/lib",
        ] {
            if PathBuf::from(dir).join("libclang.so.1").exists()
                || PathBuf::from(dir).join("libclang.so").exists()
            {
                // Build scripts are single-threaded: setting it is sound.
                env::set_var("LIBCLANG_PATH", dir);
                break;
            }
        }
    }
    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .allowlist_type("hpcap_.*")
        .allowlist_var("HPCAP_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate()
        .expect("bindgen failed on include/hpcap.h (is libclang installed? set LIBCLANG_PATH)");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it")).join("hpcap_sys.rs");
    bindings
        .write_to_file(&out)
        .expect("cannot write the bindings");
}
