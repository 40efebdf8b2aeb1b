//! NumPy `.npy`: 1-D or 2-D arrays of floats or integers, little-endian, C or Fortran
//! order. Integers keep their values (no scaling: unlike WAV, the file says nothing about
//! full scale).

use super::error::check_finite;
use super::limits::product;
use super::{DataError, Limits};

/// Decodes `.npy` bytes to channels. A 1-D array is one channel; in a 2-D array time runs
/// along the longer axis (`(samples, channels)` or `(channels, samples)`).
pub fn decode_npy(bytes: &[u8], limits: &Limits) -> Result<Vec<Vec<f32>>, DataError> {
    decode(bytes, "input", limits)
}

pub(crate) fn decode(bytes: &[u8], file: &str, limits: &Limits) -> Result<Vec<Vec<f32>>, DataError> {
    let bad = |problem: &str| DataError::malformed(file, format!("not a valid .npy file: {problem}"));
    let (version, rest) = match bytes.strip_prefix(b"\x93NUMPY") {
        Some([major, _minor, rest @ ..]) => (*major, rest),
        _ => return Err(bad("no \\x93NUMPY magic")),
    };
    let (header_len, rest) = match (version, rest) {
        (1, [a, b, rest @ ..]) => (usize::from(u16::from_le_bytes([*a, *b])), rest),
        (2 | 3, [a, b, c, d, rest @ ..]) => (u32::from_le_bytes([*a, *b, *c, *d]) as usize, rest),
        (1..=3, _) => return Err(bad("header cut short")),
        (v, _) => return Err(DataError::unsupported(file, format!(".npy format version {v}"))),
    };
    let (header, data) = (rest.get(..header_len), rest.get(header_len..));
    let (Some(header), Some(data)) = (header, data) else { return Err(bad("header cut short")) };
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| bad("header has no 'descr'"))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = dict_value(header, "fortran_order").ok_or_else(|| bad("header has no 'fortran_order'"))?;
    let fortran = fortran.trim() == "True";
    let shape = dict_value(header, "shape").ok_or_else(|| bad("header has no 'shape'"))?;
    let shape: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("shape is not a tuple of sizes")))
        .collect::<Result<_, _>>()?;
    if shape.is_empty() || shape.len() > 2 {
        return Err(DataError::unsupported(file, format!("a {}-dimensional array (only 1-D and 2-D)", shape.len())));
    }
    // Checked before a value is converted: the shape is only a claim of the header.
    let count = limits.check_samples(file, &format!("shape {shape:?} holds"), product(&shape))?;
    let values = numbers(data, descr, file, count)?;
    if values.len() < count {
        return Err(bad(&format!("shape {shape:?} needs {count} values, the file holds {}", values.len())));
    }
    let channels = match *shape.as_slice() {
        [n] => vec![values.get(..n).unwrap_or_default().to_vec()],
        [rows, cols] => {
            let at = |r: usize, c: usize| {
                let i = if fortran { c * rows + r } else { r * cols + c };
                values.get(i).copied().unwrap_or_default()
            };
            let channels = rows.min(cols);
            limits.check_channels(file, channels)?;
            if rows >= cols {
                (0..cols).map(|c| (0..rows).map(|r| at(r, c)).collect()).collect()
            } else {
                (0..rows).map(|r| (0..cols).map(|c| at(r, c)).collect()).collect()
            }
        }
        _ => return Err(DataError::unsupported(file, "only 1-D and 2-D arrays")),
    };
    check_finite(file, &channels)?;
    Ok(channels)
}

/// The text of `'key': value` in the header's Python dict literal, up to the next key.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    // A tuple holds commas; anything else ends at the next comma or brace.
    let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}']).unwrap_or(rest.len()) };
    Some(rest[..end].trim())
}

/// At most `count` values of type `descr` from `data`.
fn numbers(data: &[u8], descr: &str, file: &str, count: usize) -> Result<Vec<f32>, DataError> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            data.chunks_exact($n)
                .take(count)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    <$t>::from_le_bytes(a) as f32
                })
                .collect()
        };
    }
    Ok(match descr {
        "<f4" => conv!(f32, 4),
        "<f8" => conv!(f64, 8),
        "|i1" | "<i1" => data.iter().take(count).map(|&b| b as i8 as f32).collect(),
        "|u1" | "<u1" | "|b1" => data.iter().take(count).map(|&b| b as f32).collect(),
        "<i2" => conv!(i16, 2),
        "<u2" => conv!(u16, 2),
        "<i4" => conv!(i32, 4),
        "<u4" => conv!(u32, 4),
        "<i8" => conv!(i64, 8),
        "<u8" => conv!(u64, 8),
        other => {
            return Err(DataError::unsupported(
                file,
                format!(".npy dtype `{other}` (only little-endian floats and integers)"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let order = if fortran { "True" } else { "False" };
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn reads_int16_c_order_and_float64_fortran_order() {
        let data: Vec<u8> = [1i16, 2, 3, 4, 5, 6].iter().flat_map(|v| v.to_le_bytes()).collect();
        // (3, 2): three samples of two channels.
        assert_eq!(
            decode_npy(&npy("<i2", false, "(3, 2)", &data), &Limits::default()).unwrap(),
            vec![vec![1.0, 3.0, 5.0], vec![2.0, 4.0, 6.0]]
        );
        let data: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        // (2, 3) in Fortran order: two channels of three samples, stored column by column.
        assert_eq!(
            decode_npy(&npy("<f8", true, "(2, 3)", &data), &Limits::default()).unwrap(),
            vec![vec![1.0, 3.0, 5.0], vec![2.0, 4.0, 6.0]]
        );
    }

    #[test]
    fn big_endian_and_short_data_are_named_errors() {
        let err = decode(&npy(">f4", false, "(2,)", &[0; 8]), "b.npy", &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("b.npy") && err.contains("`>f4`"), "{err}");
        let err = decode(&npy("<f4", false, "(4,)", &[0; 8]), "s.npy", &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("s.npy") && err.contains("needs 4 values"), "{err}");
    }
}
