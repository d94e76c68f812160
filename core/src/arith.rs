// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Division and remainder without a panic path.
//!
//! `a / b` and `a % b` with a `b` the compiler cannot prove non-zero compile
//! to a check that calls `core::panicking::panic_const::panic_const_div_by_zero`.
//! In the kernel module, objtool (Linux 7.3) does not know that function
//! never returns and warns that the caller "falls through to the next
//! function", so the module would not build cleanly. Core code therefore
//! divides by runtime values only through these helpers; the callers'
//! invariants make the zero case unreachable, and it yields 0 if not.

/// `a / b`, or 0 if `b == 0`.
#[inline]
pub const fn div_u32(a: u32, b: u32) -> u32 {
    match a.checked_div(b) {
        Some(v) => v,
        None => 0,
    }
}

/// `a % b`, or 0 if `b == 0`.
#[inline]
pub const fn rem_u32(a: u32, b: u32) -> u32 {
    match a.checked_rem(b) {
        Some(v) => v,
        None => 0,
    }
}

/// `a / b`, or 0 if `b == 0`.
#[inline]
pub const fn div_u64(a: u64, b: u64) -> u64 {
    match a.checked_div(b) {
        Some(v) => v,
        None => 0,
    }
}

/// `a % b`, or 0 if `b == 0`.
#[inline]
pub const fn rem_u64(a: u64, b: u64) -> u64 {
    match a.checked_rem(b) {
        Some(v) => v,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_divisor_is_zero_and_others_match_the_operators() {
        assert_eq!(
            (div_u32(7, 0), rem_u32(7, 0), div_u64(7, 0), rem_u64(7, 0)),
            (0, 0, 0, 0)
        );
        for (a, b) in [(7u32, 2u32), (0, 5), (u32::MAX, 3)] {
            assert_eq!((div_u32(a, b), rem_u32(a, b)), (a / b, a % b));
            let (a, b) = (u64::from(a) << 20, u64::from(b));
            assert_eq!((div_u64(a, b), rem_u64(a, b)), (a / b, a % b));
        }
    }
}
