//! JSON numbers read straight from the body's text to `f32`, eight bytes at a time, to
//! the same value serde_json gives.
//!
//! serde_json reads a number one character at a time and builds an `f64`; a window of 2048
//! samples written as float64 text is some 40 kB of digits, and that loop was a quarter of a
//! served JSON request's CPU. Here the digits are taken eight bytes per step (the SWAR
//! arithmetic of fast_float and simdjson) into a `u64`, and the value is made as serde_json
//! makes it without its `float_roundtrip` feature: the digits as an `f64`, times or divided
//! by a power of ten, then `as f32`. That is the same arithmetic only while the digits' value
//! stays below 10^19 and the power of ten is exact (1e0 to 1e22), which covers what clients
//! write (Python's float64 text has at most 17 digits); any other number's text is handed to
//! serde_json itself, so that every value is serde_json's to the bit.

/// 10^0 ..= 10^22: the powers of ten an `f64` holds exactly.
const EXACT_POWERS: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// 10^n for n = 0..=8.
const SCALE: [u64; 9] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// 10^(19 - n) for n = 0..=8: digits are kept in a `u64` while their value stays below
/// 10^19 (a number with more significant digits is handed to serde_json); n more digits
/// fit while the value so far is below `KEEP_BELOW[n]`.
// Evaluated while compiling: an index out of range fails the build, not a request.
#[allow(clippy::indexing_slicing)]
const KEEP_BELOW: [u64; 9] = {
    let mut below = [0; 9];
    let mut n = 0;
    while n < 9 {
        below[n] = 10_000_000_000_000_000_000 / SCALE[n];
        n += 1;
    }
    below
};

/// The number at `s[start..]` in JSON's grammar, as `f32`, and the index just past it.
/// `None` when the text there is not a JSON number or its value is not a finite `f32`.
#[inline]
pub(super) fn read(s: &[u8], start: usize) -> Option<(f32, usize)> {
    let mut i = start;
    let negative = s.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let mut digits = Digits::default();
    // One zero, or digits that do not start with zero.
    match s.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits.take(s, i, false),
        _ => return None,
    }
    if s.get(i) == Some(&b'.') {
        let first = i + 1;
        i = digits.take(s, first, true);
        if i == first {
            return None;
        }
    }
    let mut exponent = 0i64;
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        let sign = match s.get(i) {
            Some(b'-') => {
                i += 1;
                -1
            }
            Some(b'+') => {
                i += 1;
                1
            }
            _ => 1,
        };
        let first = i;
        while let Some(d) = s.get(i).filter(|c| c.is_ascii_digit()) {
            exponent = exponent.saturating_mul(10).saturating_add(i64::from(d - b'0'));
            i += 1;
        }
        if i == first {
            return None;
        }
        exponent *= sign;
    }
    let power = digits.exponent.saturating_add(exponent);
    let value = match (digits.dropped, power) {
        (false, 0..=22) => digits.mantissa as f64 * EXACT_POWERS.get(power.unsigned_abs() as usize)?,
        (false, -22..=-1) => digits.mantissa as f64 / EXACT_POWERS.get(power.unsigned_abs() as usize)?,
        _ => by_serde_json(s.get(start..i)?)?.abs(),
    };
    let value = if negative { -value } else { value } as f32;
    value.is_finite().then_some((value, i))
}

/// A number with more digits than a `u64` holds or far from 1: serde_json's own reading of
/// its text (out of line: the common path stays small enough to inline).
#[cold]
#[inline(never)]
fn by_serde_json(text: &[u8]) -> Option<f64> {
    serde_json::from_slice(text).ok()
}

/// The significant digits read so far and the power of ten that scales them.
#[derive(Default)]
struct Digits {
    /// The digits' value, below 10^19.
    mantissa: u64,
    exponent: i64,
    /// Whether the digits reached 10^19 (more than a `u64` always holds): the number is
    /// then serde_json's to read.
    dropped: bool,
}

impl Digits {
    /// Reads the run of digits at `s[i..]` (after the point when `fraction`); returns the
    /// index past it. Eight bytes at a time: the digits among them are counted and valued
    /// without a branch on how many there are, which varies from number to number.
    #[inline]
    fn take(&mut self, s: &[u8], mut i: usize, fraction: bool) -> usize {
        while let Some(chunk) = s.get(i..).and_then(<[u8]>::first_chunk::<8>) {
            let word = u64::from_le_bytes(*chunk);
            let n = leading_digits(word);
            self.push(n, digits_value(word, n), fraction);
            i += n;
            if n < 8 {
                return i;
            }
        }
        // The body's last few bytes (a body ends with brackets: never a number's).
        while let Some(d) = s.get(i).filter(|c| c.is_ascii_digit()) {
            self.push(1, u64::from(d - b'0'), fraction);
            i += 1;
        }
        i
    }

    /// Appends `n` digits worth `value`.
    #[inline(always)]
    fn push(&mut self, n: usize, value: u64, fraction: bool) {
        match (KEEP_BELOW.get(n), SCALE.get(n)) {
            (Some(&below), Some(&scale)) if self.mantissa < below => {
                self.mantissa = self.mantissa * scale + value;
                if fraction {
                    self.exponent -= n as i64;
                }
            }
            _ => self.dropped = true,
        }
    }
}

/// How many of the eight bytes of `word` (the first in its lowest byte) are ASCII digits
/// before the first one that is not (fast_float's digit test, byte by byte: a byte is a
/// digit when its high nibble and that of itself plus 6 are both 3).
#[inline(always)]
fn leading_digits(word: u64) -> usize {
    let high = |v: u64| v & 0xF0F0_F0F0_F0F0_F0F0;
    // Zero bytes where there are digits. (A carry out of a byte's +6 reaches only the
    // bytes after it, which follow a byte that is not a digit.)
    let others = (high(word) | (high(word.wrapping_add(0x0606_0606_0606_0606)) >> 4)) ^ 0x3333_3333_3333_3333;
    (others.trailing_zeros() / 8) as usize
}

/// The value of the first `n` bytes of `word`, digits.
#[inline(always)]
fn digits_value(word: u64, n: usize) -> u64 {
    // Their values, moved up to the top bytes, below them zeros, as leading digits; what
    // follows them (and the borrows of their subtraction) falls off the top.
    let values = word.wrapping_sub(0x3030_3030_3030_3030);
    combine(values.checked_shl(8 * (8 - n) as u32).unwrap_or(0))
}

/// The value of eight digit values (0-9) in the bytes of `v`, the first one the most
/// significant (fast_float's `parse_8digits`).
#[inline(always)]
fn combine(v: u64) -> u64 {
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let v1 = (v & 0x0000_00FF_0000_00FF).wrapping_mul(0x000F_4240_0000_0064);
    let v2 = ((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(0x0000_2710_0000_0001);
    v1.wrapping_add(v2) >> 32
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// What serde_json makes of the same text: its `f64`, then `f32`.
    fn reference(text: &str) -> Option<f32> {
        let x = serde_json::from_str::<f64>(text).ok()? as f32;
        x.is_finite().then_some(x)
    }

    fn check(text: &str) {
        let ours = read(text.as_bytes(), 0).filter(|&(_, end)| end == text.len()).map(|(x, _)| x);
        assert_eq!(ours.map(f32::to_bits), reference(text).map(f32::to_bits), "{text}");
    }

    #[test]
    fn numbers_as_clients_write_them_read_bit_for_bit_as_serde_json_reads_them() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..20_000 {
            let x: f32 = rng.random_range(-3.0..3.0);
            check(&serde_json::to_string(&f64::from(x)).unwrap()); // Python's float64 text
            check(&serde_json::to_string(&x).unwrap()); // shortest f32 text
            let y: f64 = rng.random_range(-1e6..1e6) * 10f64.powi(rng.random_range(-30..30));
            check(&serde_json::to_string(&y).unwrap());
            check(&format!("{y:e}"));
            check(&format!("{:.25}", x));
            check(&rng.random::<i64>().to_string());
        }
    }

    #[test]
    fn jsons_number_grammar_and_range_are_kept() {
        for text in [
            "0",
            "-0",
            "1",
            "-1",
            "10",
            "0.5",
            "-0.000123",
            "1e3",
            "1E+3",
            "1e-3",
            "123.456e-7",
            "3.4028235e38",
            "1e-45",
            "1e-46",
            "0.0000000000000000000000000001",
            "123456789012345678901234567890",
            "0.1234567890123456789012345678",
            "99999999999999999999.5",
            "1e400",
            "-1e39",
            "1e-400",
            "12345678",
            "1234567890123456",
            "0.00000000000000000000000000000000000000000000001e46",
        ] {
            check(text);
        }
        // Not JSON numbers (serde_json refuses them too).
        for text in ["", "-", "01", "1.", ".5", "+1", "1e", "1e+", "--1", "0x10", "NaN", "Infinity", "1.e3"] {
            let ours = read(text.as_bytes(), 0).filter(|&(_, end)| end == text.len());
            assert!(ours.is_none(), "{text:?} read as {ours:?}");
        }
        // Numbers whose digits carry a power of ten against their exponent's, or that lie next
        // to halfway between two `f32`s (found by a reviewer): serde_json's values, to the bit.
        let zeros = |n: usize| "0".repeat(n);
        for text in [
            format!("0.{}1e100015", zeros(100_010)),
            format!("1{}e-100015", zeros(100_010)),
            format!("0.{}1e100040", zeros(100_000)),
            format!("0.{}1e700001", zeros(700_000)),
            format!("123{}e-100010", zeros(100_010)),
            "1.36717313528060890881".into(),
            "6.3268505527958032587e-6".into(),
            "2.034772040509653e-38".into(),
            "1.1129607621656245e-14".into(),
        ] {
            check(&text);
        }
        // Where a number stops: the caller checks what follows.
        assert_eq!(read(b"12, 3", 0), Some((12.0, 2)));
        assert_eq!(read(b"[-2.5]", 1), Some((-2.5, 5)));
        assert_eq!(read(b"1e99999999999999999999", 0), None);
    }

    #[test]
    fn serde_json_reads_numbers_with_the_arithmetic_copied_here() {
        // Its `float_roundtrip` feature would round this correctly (…238); without it, the
        // digits as an `f64` divided by 1e17 give …24. Should a dependency ever turn the
        // feature on, `read` must follow.
        let serde: f64 = serde_json::from_str("0.11215044773942239").unwrap();
        assert_eq!(serde, 11_215_044_773_942_239u64 as f64 / 1e17);
        assert_ne!(serde, "0.11215044773942239".parse::<f64>().unwrap());
    }
}
