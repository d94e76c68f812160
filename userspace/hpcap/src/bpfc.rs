// SPDX-License-Identifier: MIT
//! Compiling tcpdump filter expressions to classic BPF for an Ethernet
//! link: with libpcap's `pcap_compile` (loaded at run time, so the tools
//! start on machines without libpcap), else with `tcpdump -dd`. Used by
//! `hpcapctl config --filter` and `hpcap-query`.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};

use crate::{Error, Result};

fn invalid(msg: String) -> Error {
    Error::Invalid(msg)
}
use crate::core::bpf::SockFilter;

#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut SockFilter,
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type Compile =
    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int;
type GetErr = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type FreeCode = unsafe extern "C" fn(*mut BpfProgram);
type Close = unsafe extern "C" fn(*mut c_void);

const DLT_EN10MB: c_int = 1;

fn sym<T>(lib: *mut c_void, name: &CStr) -> Option<T> {
    // SAFETY: dlsym on a handle from dlopen with a NUL-terminated name.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: T is the function pointer type of the libpcap symbol (the
    // signatures above are those of <pcap/pcap.h>).
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

fn with_libpcap(expr: &str) -> Option<Result<Vec<SockFilter>>> {
    let lib = ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"]
        .iter()
        .find_map(|n| {
            let c = CString::new(*n).ok()?;
            // SAFETY: dlopen with a NUL-terminated name.
            let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            (!h.is_null()).then_some(h)
        })?;
    let open_dead: OpenDead = sym(lib, c"pcap_open_dead")?;
    let compile: Compile = sym(lib, c"pcap_compile")?;
    let geterr: GetErr = sym(lib, c"pcap_geterr")?;
    let freecode: FreeCode = sym(lib, c"pcap_freecode")?;
    let close: Close = sym(lib, c"pcap_close")?;
    let Ok(cexpr) = CString::new(expr) else {
        return Some(Err(invalid("filter contains a NUL byte".into())));
    };
    // SAFETY: libpcap API used as documented: a dead handle for Ethernet
    // with the maximum snaplen, compile, copy the program out, free.
    unsafe {
        let p = open_dead(DLT_EN10MB, 262_144);
        if p.is_null() {
            return Some(Err(invalid("pcap_open_dead failed".into())));
        }
        let mut prog = BpfProgram {
            bf_len: 0,
            bf_insns: std::ptr::null_mut(),
        };
        let r = if compile(p, &mut prog, cexpr.as_ptr(), 1, 0xFFFF_FFFF) != 0 {
            let msg = CStr::from_ptr(geterr(p)).to_string_lossy().into_owned();
            Err(invalid(format!("cannot compile filter {expr:?}: {msg}")))
        } else {
            let v = std::slice::from_raw_parts(prog.bf_insns, prog.bf_len as usize).to_vec();
            freecode(&mut prog);
            Ok(v)
        };
        close(p);
        Some(r)
    }
}

fn with_tcpdump(expr: &str) -> Result<Vec<SockFilter>> {
    // tcpdump needs a link type: give it an empty Ethernet pcap file.
    let tmp = std::env::temp_dir().join(format!(
        "hpcap-bpfc-{}-{:?}.pcap",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut hdr = [0u8; 24];
    crate::core::raw::write_pcap_header(&mut hdr, 0, false, 262_144)
        .map_err(|e| invalid(format!("pcap header: {e:?}")))?;
    std::fs::write(&tmp, hdr).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    let out = std::process::Command::new("tcpdump")
        .arg("-r")
        .arg(&tmp)
        .arg("-dd")
        .arg(expr)
        .output();
    let _ = std::fs::remove_file(&tmp);
    let out = out.map_err(|e| {
        Error::io(
            "neither libpcap nor tcpdump is available to compile the filter",
            e,
        )
    })?;
    if !out.status.success() {
        return Err(invalid(format!(
            "cannot compile filter {expr:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse_dd(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `tcpdump -dd` output: `{ 0x28, 0, 0, 0x0000000c },` lines.
pub fn parse_dd(text: &str) -> Result<Vec<SockFilter>> {
    let mut v = Vec::new();
    for line in text.lines() {
        let l = line
            .trim()
            .trim_end_matches(',')
            .trim_start_matches('{')
            .trim_end_matches('}');
        if l.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        if f.len() != 4 {
            return Err(invalid(format!("unexpected tcpdump -dd line {line:?}")));
        }
        let num = |s: &str| -> Result<u64> {
            let s = s.trim();
            let v = match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            };
            v.map_err(|_| invalid(format!("unexpected tcpdump -dd line {line:?}")))
        };
        v.push(SockFilter {
            code: num(f[0])? as u16,
            jt: num(f[1])? as u8,
            jf: num(f[2])? as u8,
            k: num(f[3])? as u32,
        });
    }
    Ok(v)
}

/// Compiles `expr` for an Ethernet link.
pub fn compile(expr: &str) -> Result<Vec<SockFilter>> {
    match with_libpcap(expr) {
        Some(r) => r,
        None => with_tcpdump(expr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpcap_and_tcpdump_agree() {
        let a = compile("udp port 53").unwrap();
        assert!(crate::core::bpf::verify(&a).is_ok());
        if std::process::Command::new("tcpdump")
            .arg("--version")
            .output()
            .is_ok()
        {
            assert_eq!(with_tcpdump("udp port 53").unwrap(), a);
        }
        assert!(compile("no such primitive").is_err());
    }
}
