// SPDX-License-Identifier: MIT
//! Small helpers shared by the tools: clocks, sizes, times, UTC calendar.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in ns since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Monotonic time in ns (`CLOCK_MONOTONIC`: the same clock in every
/// process of the machine, never set back). Deadlines of lingering
/// listeners of software sources use it.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Parses a size: a number with an optional binary suffix `K`, `M`, `G`,
/// `T` (KiB...; `KiB`, `MB` etc. are accepted and also mean powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    let mult: u64 = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        other => return Err(format!("unknown size suffix {other:?} in {s:?}")),
    };
    if num.contains('.') {
        let v: f64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
        Ok((v * mult as f64) as u64)
    } else {
        let v: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
        v.checked_mul(mult)
            .ok_or_else(|| format!("size {s:?} too large"))
    }
}

/// Parses a duration in seconds with an optional unit `s`, `m`, `h`, `d`.
pub fn parse_duration_s(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        Some('d') => (&t[..t.len() - 1], 86400),
        _ => (t, 1),
    };
    let v: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    Ok(v * mult)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm.
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// UTC calendar fields of a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// Year.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day 1..=31.
    pub day: u32,
    /// Hour.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
    /// Nanoseconds.
    pub nanos: u32,
}

impl Utc {
    /// Splits ns since the epoch.
    pub fn from_ns(ns: u64) -> Self {
        let secs = (ns / 1_000_000_000) as i64;
        let (year, month, day) = civil_from_days(secs.div_euclid(86400));
        let sod = secs.rem_euclid(86400) as u32;
        Self {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            nanos: (ns % 1_000_000_000) as u32,
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.nanos
        )
    }
}

/// Parses a time: ns/µs/s since the epoch as a number (`1700000000`,
/// `1700000000.25`), or UTC `YYYY-MM-DD[T ]HH:MM:SS[.frac][Z]`, or
/// `YYYY-MM-DD`. Returns ns since the epoch.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad =
        || format!("bad time {s:?} (use seconds since the epoch or YYYY-MM-DD HH:MM:SS[.frac])");
    if t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let secs: u64 = int.parse().map_err(|_| bad())?;
        let mut ns = 0u64;
        for (i, c) in frac.chars().take(9).enumerate() {
            ns += u64::from(c.to_digit(10).ok_or_else(bad)?) * 10u64.pow(8 - i as u32);
        }
        return Ok(secs * 1_000_000_000 + ns);
    }
    let t = t.trim_end_matches('Z');
    let (date, time) = match t.find(['T', ' ']) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, "00:00:00"),
    };
    let d: Vec<&str> = date.split('-').collect();
    if d.len() != 3 {
        return Err(bad());
    }
    let y: i64 = d[0].parse().map_err(|_| bad())?;
    let mo: u32 = d[1].parse().map_err(|_| bad())?;
    let da: u32 = d[2].parse().map_err(|_| bad())?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let h: Vec<&str> = hms.split(':').collect();
    if h.len() < 2 || h.len() > 3 {
        return Err(bad());
    }
    let hh: u64 = h[0].parse().map_err(|_| bad())?;
    let mm: u64 = h[1].parse().map_err(|_| bad())?;
    let ss: u64 = h.get(2).map_or(Ok(0), |v| v.parse()).map_err(|_| bad())?;
    let mut ns = 0u64;
    for (i, c) in frac.chars().take(9).enumerate() {
        ns += u64::from(c.to_digit(10).ok_or_else(bad)?) * 10u64.pow(8 - i as u32);
    }
    let days = days_from_civil(y, mo, da);
    if days < 0 {
        return Err(bad());
    }
    Ok(((days as u64 * 86400) + hh * 3600 + mm * 60 + ss) * 1_000_000_000 + ns)
}

static STOP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    // Relaxed: a flag polled by the main loop; async-signal-safe.
    STOP.store(sig as u32, std::sync::atomic::Ordering::Relaxed);
}

/// Installs SIGINT and SIGTERM handlers that only record the signal; the
/// tools poll [`stop_requested`] in their loops and stop cleanly.
pub fn install_stop_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a plain sigaction with an async-signal-safe handler (one
        // atomic store); the struct is fully initialised by zeroing.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The stop signal received (SIGINT or SIGTERM), if any.
pub fn stop_requested() -> Option<i32> {
    // Relaxed: see `on_stop_signal`.
    match STOP.load(std::sync::atomic::Ordering::Relaxed) {
        0 => None,
        s => Some(s as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4M").unwrap(), 4 << 20);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert!(parse_size("4X").is_err());
    }

    #[test]
    fn calendar_roundtrip() {
        for d in [-1000i64, 0, 1, 59, 60, 365, 10957, 19723, 50000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        let u = Utc::from_ns(1_700_000_000_123_456_789);
        assert_eq!(u.rfc3339(), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123456789Z").unwrap(),
            1_700_000_000_123_456_789
        );
        assert_eq!(
            parse_time("1700000000.5").unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(
            parse_time("2023-11-14 22:13").unwrap(),
            1_699_999_980_000_000_000
        );
    }
}
