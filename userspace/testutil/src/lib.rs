// SPDX-License-Identifier: MIT
//! Helpers shared by the userspace tools' integration tests (a
//! dev-dependency of each tool's crate): locating the tools' binaries,
//! temporary directories, the external oracles (capinfos, tshark, editcap),
//! and reading capture files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static BUILD: Mutex<()> = Mutex::new(());

/// Path of one of the workspace's binaries, building its package if the
/// test run did not (e.g. `cargo test -p hpcapdd` builds only hpcapdd).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf();
    let p = dir.join(name);
    let _g = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !p.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // Binaries that live in another package.
        let pkg = match name {
            "hpcap-synth" => "hpcap-index",
            n => n,
        };
        cmd.args(["build", "--quiet", "-p", pkg, "--bin", name]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("running cargo build");
        assert!(st.success(), "cargo build -p {name} failed");
    }
    assert!(p.exists(), "{} missing", p.display());
    p
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/hpcap-test-TAG-PID-NANOS`.
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "hpcap-test-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A unique shared-memory source path, removed on drop.
pub struct ShmPath(pub PathBuf);

impl ShmPath {
    /// A path under /dev/shm (or `$TMPDIR`) that does not exist yet.
    pub fn new(tag: &str) -> Self {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        Self(base.join(format!(
            "hpcap-test-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )))
    }
}

impl Drop for ShmPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether an external tool is installed; prints why a test skips if not.
pub fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP: {tool} is not installed");
    }
    ok
}

/// Runs a command, returning its output; panics with stderr on failure
/// unless `expect_fail`.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Starts hpcap-sim with `args` and waits until its source file exists.
/// The file is kept when the simulator ends (`--keep`), so a test can still
/// read the source's state; [`ShmPath`] removes it.
pub fn start_sim(shm: &Path, args: &[&str]) -> Child {
    let _ = std::fs::remove_file(shm);
    let child = Command::new(bin("hpcap-sim"))
        .arg("--keep")
        .args(args)
        .arg(shm)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning hpcap-sim");
    let t = Instant::now();
    while !shm.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "hpcap-sim did not create {}",
            shm.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// Waits for a child with a timeout; kills it and panics on timeout.
pub fn wait_timeout(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if t.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("process {} did not finish within {secs} s", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// All capture files under `dir` (not index sidecars, not the flows/ tree),
/// sorted by path.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("flows") {
                    stack.push(p);
                }
            } else if p.extension().is_none_or(|x| x != "hpidx") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// (timestamp ns, sequence number) of every synthetic packet in a file,
/// read with the core's reader.
pub fn seqs(path: &Path) -> Vec<(u64, u64)> {
    let f = hpcap::files::CaptureFile::open(path).unwrap();
    f.packets()
        .unwrap()
        .map(|p| {
            let p = p.unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            let seq = u64::from_be_bytes(p.data[42..50].try_into().unwrap());
            (p.ts_ns, seq)
        })
        .collect()
}

/// Packet count according to capinfos (which must accept the file).
pub fn capinfos_count(path: &Path) -> u64 {
    let out = run(Command::new("capinfos").args(["-M", "-c", "-T"]).arg(path));
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s.lines().last().unwrap_or_default();
    line.split('\t')
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("capinfos output: {s}"))
}

/// Whether we are root (mounting test file systems).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A small tmpfs mounted for one test (disk-full and retention tests),
/// unmounted when dropped.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax, e.g. "2m") at `at`
    /// (created). `None`, after printing why the test skips, when we are
    /// not root or the mount is refused (an unprivileged container).
    pub fn mount(at: &Path, size: &str, test: &str) -> Option<Self> {
        if !is_root() {
            eprintln!("SKIP: {test} needs root to mount a small tmpfs");
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("SKIP: {test}: cannot mount a tmpfs (no privilege in this container?)");
            return None;
        }
        Some(Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
