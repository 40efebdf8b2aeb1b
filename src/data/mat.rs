//! MATLAB level 5 MAT-files (what `save -v6`/`-v7` write, and the CWRU files), with
//! compressed variables. A small reader of our own rather than the `matfile` crate: that
//! one returns a truncated or damaged file as a file with fewer variables, and says
//! nothing about the variables it skips, which turns a broken download into a confusing
//! "no such variable".

use std::borrow::Cow;

use super::error::check_finite;
use super::limits::product;
use super::{DataError, Limits};

/// The variable picked when none is named: the drive-end accelerometer of CWRU-like files.
pub const DEFAULT_VARIABLE: &str = "*_DE_time";

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

const CLASS_NAMES: [&str; 16] = [
    "unknown", "cell", "struct", "object", "char", "sparse", "double", "single", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64",
];

/// One variable as found in the file; its values are decoded only when asked for.
struct Variable<'a> {
    name: String,
    class: u8,
    complex: bool,
    dims: Vec<usize>,
    /// The sub-elements after the name (real part, then imaginary part).
    body: Cow<'a, [u8]>,
    big_endian: bool,
}

impl Variable<'_> {
    fn is_numeric(&self) -> bool {
        (6..=15).contains(&self.class)
    }

    fn describe(&self) -> String {
        let dims: Vec<String> = self.dims.iter().map(|d| d.to_string()).collect();
        let class = CLASS_NAMES.get(self.class as usize).copied().unwrap_or("unknown");
        let complex = if self.complex { " complex" } else { "" };
        format!("{} ({}{complex} {class})", self.name, dims.join("x"))
    }
}

/// Reads the channels of one variable: `variable` is a name or a pattern with `*` and `?`;
/// `None` takes the one matching [`DEFAULT_VARIABLE`], or the only numeric array with more
/// than one element. Returns the channels and the variable's name.
pub(crate) fn decode(
    bytes: &[u8],
    file: &str,
    variable: Option<&str>,
    limits: &Limits,
) -> Result<(Vec<Vec<f32>>, String), DataError> {
    let big_endian = check_header(bytes, file)?;
    let mut variables = Vec::new();
    let mut rest = bytes.get(128..).unwrap_or_default();
    // Every compressed variable is held inflated until one is chosen: they share the budget.
    let mut inflated_total = 0u64;
    while !rest.is_empty() {
        // Some writers pad the end of the file; fewer than a tag's bytes cannot be a variable.
        if rest.len() < 8 && rest.iter().all(|&b| b == 0) {
            break;
        }
        let (element, after) = next_element(rest, big_endian, file, "variable")?;
        rest = after;
        match element.kind {
            MI_MATRIX => variables.extend(parse_matrix(element.data.into(), big_endian, file)?),
            MI_COMPRESSED => {
                let left = Limits { max_inflated_bytes: limits.max_inflated_bytes - inflated_total, ..*limits };
                let inflated =
                    left.inflate(file, "a compressed variable", flate2::read::ZlibDecoder::new(element.data))?;
                inflated_total += inflated.len() as u64;
                let (inner, _) = next_element(&inflated, big_endian, file, "compressed variable")?;
                if inner.kind == MI_MATRIX {
                    let data = inner.data.to_vec();
                    variables.extend(parse_matrix(Cow::Owned(data), big_endian, file)?);
                }
            }
            // Anything else at the top level (e.g. subsystem data) is not a variable.
            _ => {}
        }
    }
    let chosen = choose(&variables, variable, file)?;
    let what = format!("variable `{}` declares", chosen.name);
    let count = limits.check_samples(file, &what, product(&chosen.dims))?;
    if count == 0 {
        return Err(DataError::malformed(file, format!("variable `{}` holds no values", chosen.name)));
    }
    let values = numbers(&chosen.body, chosen.big_endian, file, &chosen.name)?;
    if values.len() != count {
        return Err(DataError::malformed(
            file,
            format!("variable `{}` declares {count} values but holds {}", chosen.name, values.len()),
        ));
    }
    let channels = to_channels(values, &chosen.dims, file, &chosen.name, limits)?;
    check_finite(file, &channels)?;
    Ok((channels, chosen.name.clone()))
}

/// Checks the 128-byte header; returns whether the file is big-endian.
fn check_header(bytes: &[u8], file: &str) -> Result<bool, DataError> {
    if bytes.starts_with(b"MATLAB 7.3") {
        return Err(DataError::unsupported(
            file,
            "MATLAB v7.3 (HDF5) MAT-file; save it with `save -v7` to read it here",
        ));
    }
    if bytes.len() < 128 || !bytes.starts_with(b"MATLAB") {
        return Err(DataError::malformed(file, "not a MATLAB level 5 MAT-file (no MATLAB header)"));
    }
    match bytes.get(126..128) {
        Some(b"IM") => Ok(false),
        Some(b"MI") => Ok(true),
        _ => Err(DataError::malformed(file, "MAT-file header has no endian indicator (IM/MI)")),
    }
}

struct Element<'a> {
    kind: u32,
    data: &'a [u8],
}

/// The first four bytes of `b` as a number (zeros where `b` is shorter).
fn read_u32(b: &[u8], big_endian: bool) -> u32 {
    let mut a = [0u8; 4];
    for (to, from) in a.iter_mut().zip(b) {
        *to = *from;
    }
    if big_endian {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

/// Splits off one data element (tag, data, padding to 8 bytes), either in the normal or
/// in the small (4 bytes of data packed into the tag) format.
fn next_element<'a>(
    bytes: &'a [u8],
    big_endian: bool,
    file: &str,
    what: &str,
) -> Result<(Element<'a>, &'a [u8]), DataError> {
    let truncated = || DataError::malformed(file, format!("truncated {what} (file cut short?)"));
    if bytes.len() < 8 {
        return Err(truncated());
    }
    let first = read_u32(bytes, big_endian);
    if first >> 16 != 0 {
        let size = (first >> 16) as usize;
        if size > 4 {
            return Err(DataError::malformed(file, format!("bad small element in {what}")));
        }
        let element = Element { kind: first & 0xffff, data: bytes.get(4..4 + size).ok_or_else(truncated)? };
        return Ok((element, bytes.get(8..).unwrap_or_default()));
    }
    let size = read_u32(bytes.get(4..).unwrap_or_default(), big_endian) as usize;
    let data = bytes.get(8..).and_then(|b| b.get(..size)).ok_or_else(truncated)?;
    // Compressed elements are not padded; everything else is to a multiple of 8 bytes.
    let padded = if first == MI_COMPRESSED { size } else { size.div_ceil(8) * 8 };
    let rest = bytes.get(8..).and_then(|b| b.get(padded..)).unwrap_or_default();
    Ok((Element { kind: first, data }, rest))
}

fn parse_matrix<'a>(data: Cow<'a, [u8]>, big_endian: bool, file: &str) -> Result<Option<Variable<'a>>, DataError> {
    // An empty matrix element (allowed by the format) has no name and no values.
    if data.is_empty() {
        return Ok(None);
    }
    let (flags, rest) = next_element(&data, big_endian, file, "array flags")?;
    if flags.kind != MI_UINT32 || flags.data.len() < 8 {
        return Err(DataError::malformed(file, "variable without valid array flags"));
    }
    let word = read_u32(flags.data, big_endian);
    let class = (word & 0xff) as u8;
    let complex = word & 0x800 != 0;
    let (dims, rest) = next_element(rest, big_endian, file, "array dimensions")?;
    if dims.kind != MI_INT32 {
        return Err(DataError::malformed(file, "variable without valid dimensions"));
    }
    let dims: Vec<usize> = dims.data.chunks_exact(4).map(|c| read_u32(c, big_endian) as usize).collect();
    let (name, rest) = next_element(rest, big_endian, file, "array name")?;
    let name = String::from_utf8_lossy(name.data).into_owned();
    let offset = data.len() - rest.len();
    let body = match data {
        Cow::Borrowed(b) => Cow::Borrowed(b.get(offset..).unwrap_or_default()),
        Cow::Owned(mut v) => {
            v.drain(..offset);
            Cow::Owned(v)
        }
    };
    Ok(Some(Variable { name, class, complex, dims, body, big_endian }))
}

fn choose<'v, 'a>(
    variables: &'v [Variable<'a>],
    wanted: Option<&str>,
    file: &str,
) -> Result<&'v Variable<'a>, DataError> {
    let present = || {
        if variables.is_empty() {
            "none".to_string()
        } else {
            variables.iter().map(Variable::describe).collect::<Vec<_>>().join(", ")
        }
    };
    let error = |wanted: String| DataError::Variable { file: file.to_string(), wanted, present: present() };
    let pattern = wanted.unwrap_or(DEFAULT_VARIABLE);
    let matches: Vec<&Variable> = variables.iter().filter(|v| glob_match(pattern, &v.name)).collect();
    let chosen = match (matches.as_slice(), wanted) {
        ([one], _) => *one,
        ([], Some(w)) => return Err(error(format!("no variable matches `{w}`"))),
        ([], None) => {
            let numeric: Vec<&Variable> =
                variables.iter().filter(|v| v.is_numeric() && v.dims.iter().product::<usize>() > 1).collect();
            match numeric.as_slice() {
                [one] => *one,
                _ => {
                    return Err(error(format!(
                        "no variable named and none matches the default `{DEFAULT_VARIABLE}`; name one"
                    )))
                }
            }
        }
        (several, _) => {
            let names: Vec<&str> = several.iter().map(|v| v.name.as_str()).collect();
            return Err(error(format!("`{pattern}` matches several variables ({}); name one", names.join(", "))));
        }
    };
    if !chosen.is_numeric() || chosen.complex {
        return Err(error(format!("variable `{}` is not a real numeric array", chosen.name)));
    }
    Ok(chosen)
}

/// Decodes the real part of a numeric array; the stored type may be narrower than the
/// class (MATLAB stores whole-number doubles as small integers).
fn numbers(body: &[u8], big_endian: bool, file: &str, name: &str) -> Result<Vec<f32>, DataError> {
    let (real, _) = next_element(body, big_endian, file, &format!("values of `{name}`"))?;
    let d = real.data;
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            d.chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    (if big_endian { <$t>::from_be_bytes(a) } else { <$t>::from_le_bytes(a) }) as f32
                })
                .collect()
        };
    }
    Ok(match real.kind {
        MI_INT8 => d.iter().map(|&b| b as i8 as f32).collect(),
        MI_UINT8 => d.iter().map(|&b| b as f32).collect(),
        MI_INT16 => conv!(i16, 2),
        MI_UINT16 => conv!(u16, 2),
        MI_INT32 => conv!(i32, 4),
        MI_UINT32 => conv!(u32, 4),
        MI_SINGLE => conv!(f32, 4),
        MI_DOUBLE => conv!(f64, 8),
        MI_INT64 => conv!(i64, 8),
        MI_UINT64 => conv!(u64, 8),
        other => {
            return Err(DataError::malformed(file, format!("variable `{name}` has values of unknown type {other}")))
        }
    })
}

/// Column-major `rows x cols` to channels: a vector is one channel; in a matrix, time runs
/// along the longer axis.
fn to_channels(
    values: Vec<f32>,
    dims: &[usize],
    file: &str,
    name: &str,
    limits: &Limits,
) -> Result<Vec<Vec<f32>>, DataError> {
    let (rows, cols) = match dims {
        [r, c] => (*r, *c),
        _ => {
            return Err(DataError::unsupported(
                file,
                format!("variable `{name}` has {} dimensions (only vectors and matrices)", dims.len()),
            ))
        }
    };
    if rows == 1 || cols == 1 {
        return Ok(vec![values]);
    }
    limits.check_channels(file, rows.min(cols))?;
    if rows >= cols {
        Ok(values.chunks_exact(rows).map(<[f32]>::to_vec).collect())
    } else {
        Ok((0..rows).map(|r| values.iter().skip(r).step_by(rows).copied().collect()).collect())
    }
}

/// `*` matches any run of characters, `?` any one; everything else matches itself.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was and what it had matched up to, to backtrack into.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let (pc, nc) = (p.get(pi).copied(), n.get(ni).copied());
        if pc.is_some() && (pc == Some('?') || pc == nc) {
            pi += 1;
            ni += 1;
        } else if pc == Some('*') {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p.get(pi..).unwrap_or_default().iter().all(|&c| c == '*')
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    fn element(kind: u32, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_le_bytes().to_vec();
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out.resize(out.len().div_ceil(8) * 8, 0);
        out
    }

    /// A real double matrix variable, as MATLAB writes it.
    pub(crate) fn matrix(name: &str, rows: usize, cols: usize, values: &[f64]) -> Vec<u8> {
        let mut body = element(MI_UINT32, &[6, 0, 0, 0, 0, 0, 0, 0]);
        let dims: Vec<u8> = [rows as i32, cols as i32].iter().flat_map(|d| d.to_le_bytes()).collect();
        body.extend(element(MI_INT32, &dims));
        body.extend(element(MI_INT8, name.as_bytes()));
        let vals: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        body.extend(element(MI_DOUBLE, &vals));
        element(MI_MATRIX, &body)
    }

    pub(crate) fn compressed(variable: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(variable).expect("writing to a Vec");
        let data = z.finish().expect("writing to a Vec");
        let mut out = MI_COMPRESSED.to_le_bytes().to_vec();
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    pub(crate) fn mat_file(variables: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("{:<116}", "MATLAB 5.0 MAT-file, written by a drsn test").into_bytes();
        out.extend([0u8; 8]);
        out.extend([0x00, 0x01, b'I', b'M']);
        for v in variables {
            out.extend(v);
        }
        out
    }

    #[test]
    fn glob_patterns_match_like_a_shell() {
        assert!(glob_match("*_DE_time", "X118_DE_time"));
        assert!(!glob_match("*_DE_time", "X118_FE_time"));
        assert!(glob_match("X1?8*", "X118RPM"));
        assert!(glob_match("a*b*c", "aXXbYYbc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn reads_plain_and_compressed_variables_and_matrices_as_channels() {
        let bytes = mat_file(&[
            matrix("X001_DE_time", 4, 1, &[0.5, -0.25, 1.0, 2.0]),
            compressed(&matrix("X001_FE_time", 1, 3, &[7.0, 8.0, 9.0])),
            compressed(&matrix("both", 3, 2, &[1.0, 2.0, 3.0, 10.0, 20.0, 30.0])),
        ]);
        let (ch, name) = decode(&bytes, "t.mat", None, &Limits::default()).unwrap();
        assert_eq!((ch, name.as_str()), (vec![vec![0.5, -0.25, 1.0, 2.0]], "X001_DE_time"));
        let (ch, _) = decode(&bytes, "t.mat", Some("*_FE_time"), &Limits::default()).unwrap();
        assert_eq!(ch, vec![vec![7.0, 8.0, 9.0]]);
        let (ch, _) = decode(&bytes, "t.mat", Some("both"), &Limits::default()).unwrap();
        assert_eq!(ch, vec![vec![1.0, 2.0, 3.0], vec![10.0, 20.0, 30.0]]);
    }

    #[test]
    fn missing_or_ambiguous_variables_are_named_with_the_ones_present() {
        let bytes = mat_file(&[matrix("a1", 2, 1, &[1.0, 2.0]), matrix("a2", 2, 1, &[3.0, 4.0])]);
        let err = decode(&bytes, "t.mat", Some("b"), &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("t.mat") && err.contains("`b`") && err.contains("a1 (2x1 double)"), "{err}");
        let err = decode(&bytes, "t.mat", Some("a*"), &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("matches several variables (a1, a2)"), "{err}");
        let err = decode(&bytes, "t.mat", None, &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("*_DE_time") && err.contains("a2 (2x1 double)"), "{err}");
    }

    #[test]
    fn a_truncated_file_is_an_error_not_a_file_with_fewer_variables() {
        let bytes = mat_file(&[matrix("x_DE_time", 4, 1, &[1.0, 2.0, 3.0, 4.0])]);
        let err = decode(&bytes[..bytes.len() - 12], "cut.mat", None, &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("cut.mat") && err.contains("truncated"), "{err}");
        let err = decode(b"hello", "x.mat", None, &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("not a MATLAB level 5 MAT-file"), "{err}");
    }

    #[test]
    fn nan_in_a_variable_is_reported_with_its_position() {
        let bytes = mat_file(&[matrix("x_DE_time", 3, 1, &[1.0, f64::NAN, 3.0])]);
        let err = decode(&bytes, "nan.mat", None, &Limits::default()).unwrap_err().to_string();
        assert!(err.contains("nan.mat") && err.contains("NaN at sample 1 of channel 0"), "{err}");
    }
}
