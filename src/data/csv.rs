//! Numbers in CSV: one column, several (channels), or one picked by header name or index.
//! A first row that is not all numbers is the header; `,`, `;` or tab separate fields.

use super::error::check_finite;
use super::{DataError, Limits};

/// Decodes CSV bytes to channels: the named (or 0-based index) `column`, or every column.
pub fn decode_csv(bytes: &[u8], column: Option<&str>, limits: &Limits) -> Result<Vec<Vec<f32>>, DataError> {
    decode(bytes, "input", column, limits)
}

pub(crate) fn decode(
    bytes: &[u8],
    file: &str,
    column: Option<&str>,
    limits: &Limits,
) -> Result<Vec<Vec<f32>>, DataError> {
    let first_line = bytes.split(|&b| b == b'\n').find(|l| !l.iter().all(u8::is_ascii_whitespace));
    let delimiter = match first_line {
        Some(l) if l.contains(&b',') => b',',
        Some(l) if l.contains(&b';') => b';',
        Some(l) if l.contains(&b'\t') => b'\t',
        _ => b',',
    };
    let mut reader =
        ::csv::ReaderBuilder::new().has_headers(false).delimiter(delimiter).trim(::csv::Trim::All).from_reader(bytes);
    let mut rows = reader.records();
    let first = match rows.next() {
        Some(r) => r.map_err(|e| DataError::malformed(file, format!("not readable as CSV: {e}")))?,
        None => return Err(DataError::malformed(file, "empty CSV file")),
    };
    let header: Option<Vec<String>> = if first.iter().all(|f| f.parse::<f64>().is_ok()) {
        None
    } else {
        Some(first.iter().map(str::to_string).collect())
    };
    let width = first.len();
    let picked: Vec<usize> = match column {
        None => (0..width).collect(),
        Some(wanted) => {
            let by_name = header.as_ref().and_then(|h| h.iter().position(|n| n == wanted));
            let by_index = wanted.parse::<usize>().ok().filter(|&i| i < width);
            match by_name.or(by_index) {
                Some(i) => vec![i],
                None => {
                    let present = match &header {
                        Some(h) => h.join(", "),
                        None => format!("{width} unnamed column(s), numbered from 0"),
                    };
                    return Err(DataError::Column { file: file.to_string(), wanted: wanted.to_string(), present });
                }
            }
        }
    };
    limits.check_channels(file, picked.len())?;
    let name = |i: usize| match header.as_ref().and_then(|h| h.get(i)) {
        Some(h) => format!("`{h}`"),
        None => i.to_string(),
    };
    let mut channels = vec![Vec::new(); picked.len()];
    let mut values = 0usize;
    let data_rows = header.is_none().then_some(Ok(first)).into_iter().chain(rows);
    for row in data_rows {
        let row = row.map_err(|e| DataError::malformed(file, format!("not readable as CSV: {e}")))?;
        let line = row.position().map_or(0, |p| p.line());
        values += picked.len();
        limits.check_samples(file, "the CSV holds at least", Some(values))?;
        for (channel, &i) in channels.iter_mut().zip(&picked) {
            let field = row.get(i).unwrap_or("");
            let value = field.parse::<f32>().map_err(|_| {
                DataError::malformed(file, format!("line {line}, column {}: `{field}` is not a number", name(i)))
            })?;
            channel.push(value);
        }
    }
    if channels.first().is_none_or(Vec::is_empty) {
        return Err(DataError::malformed(file, "no rows of numbers"));
    }
    check_finite(file, &channels)?;
    Ok(channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits::DEFAULT;

    #[test]
    fn reads_a_bare_column_a_named_column_and_all_columns() {
        assert_eq!(decode(b"1\n2.5\n-3\n", "a", None, &L).unwrap(), vec![vec![1.0, 2.5, -3.0]]);
        let text = b"time;accel\n0;0.5\n1;-0.5\n";
        assert_eq!(decode(text, "a", Some("accel"), &L).unwrap(), vec![vec![0.5, -0.5]]);
        assert_eq!(decode(text, "a", None, &L).unwrap(), vec![vec![0.0, 1.0], vec![0.5, -0.5]]);
        assert_eq!(decode(b"1,2\n3,4\n", "a", Some("1"), &L).unwrap(), vec![vec![2.0, 4.0]]);
    }

    #[test]
    fn bad_cells_and_missing_columns_name_file_line_and_column() {
        let err = decode(b"x,y\n1,2\n3,oops\n", "bad.csv", None, &L).unwrap_err().to_string();
        assert!(
            err.contains("bad.csv") && err.contains("line 3") && err.contains("`y`") && err.contains("`oops`"),
            "{err}"
        );
        let err = decode(b"x,y\n1,2\n", "m.csv", Some("z"), &L).unwrap_err().to_string();
        assert!(err.contains("m.csv") && err.contains("no column `z`") && err.contains("x, y"), "{err}");
        let err = decode(b"x\n1\nNaN\n", "n.csv", None, &L).unwrap_err().to_string();
        assert!(err.contains("n.csv") && err.contains("NaN at sample 1"), "{err}");
    }
}
