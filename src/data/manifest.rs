//! Manifest CSV: one row per recording, `file,label` and optional `sampling_rate`
//! (or `sampling_rate_hz`, `sample_rate`), `variable`, `channel`, `split`; other columns
//! are kept for filters and reports.

use std::collections::BTreeMap;
use std::path::Path;

use super::confine::check_relative;
use super::load::Guard;
use super::source::Entry;
use super::split::Split;
use super::DataError;

const RATE_COLUMNS: [&str; 4] = ["sampling_rate", "sampling_rate_hz", "sample_rate", "sample_rate_hz"];

/// The rows of a manifest and its column names. `file` is relative to the manifest's folder.
pub(crate) fn read(path: &Path, guard: &Guard) -> Result<(Vec<Entry>, Vec<String>), DataError> {
    let file = path.display().to_string();
    let bytes = guard.read(path)?;
    let mut reader = ::csv::ReaderBuilder::new().trim(::csv::Trim::All).from_reader(bytes.as_slice());
    let unreadable = |e: ::csv::Error| DataError::malformed(&file, format!("not readable as CSV: {e}"));
    let header: Vec<String> = reader.headers().map_err(unreadable)?.iter().map(str::to_string).collect();
    for required in ["file", "label"] {
        if !header.iter().any(|h| h == required) {
            return Err(DataError::Column { file: file.clone(), wanted: required.into(), present: header.join(", ") });
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut entries = Vec::new();
    for row in reader.records() {
        let row = row.map_err(unreadable)?;
        let line = row.position().map_or(0, |p| p.line());
        let at = |problem: String| DataError::malformed(&file, format!("line {line}: {problem}"));
        let columns: BTreeMap<String, String> = header.iter().cloned().zip(row.iter().map(str::to_string)).collect();
        let cell = |name: &str| columns.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let (Some(name), Some(label)) = (cell("file"), cell("label")) else {
            return Err(at("empty `file` or `label`".into()));
        };
        if guard.confined() {
            check_relative(&file, line, name)?;
        }
        let sample_rate = match RATE_COLUMNS.iter().find_map(|c| cell(c).map(|v| (c, v))) {
            None => None,
            Some((column, v)) => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|r| *r >= 1.0 && r.fract() == 0.0 && *r <= u32::MAX as f64)
                    .map(|r| r as u32)
                    .ok_or_else(|| at(format!("{column} `{v}` is not a whole number of Hz")))?,
            ),
        };
        let channels = match cell("channel").or(cell("channels")) {
            None => None,
            Some(v) => Some(
                v.split([';', ',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| at(format!("channel `{v}` is not a list of channel numbers (from 0)")))?,
            ),
        };
        let split = match cell("split") {
            None => None,
            Some(v) => {
                Some(Split::parse(v).ok_or_else(|| at(format!("split `{v}`: expected train, validation or test")))?)
            }
        };
        entries.push(Entry {
            path: base.join(name),
            label: label.to_string(),
            sample_rate,
            variable: cell("variable").map(str::to_string),
            channels,
            split,
            columns,
        });
    }
    if entries.is_empty() {
        return Err(DataError::malformed(&file, "the manifest lists no files"));
    }
    Ok((entries, header))
}
