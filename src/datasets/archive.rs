//! Safe extraction of a dataset archive (tar, tar.gz or zip) of class folders:
//! `<label>/<file>`, optionally under one top-level folder. Entry names are checked one
//! component at a time (no `..`, no absolute paths, nothing hidden, at most three deep, no
//! file where a folder is), links and devices are refused, and the number of entries, the
//! unpacked sizes (zip bombs) and tar's long-name and PAX records are bounded.

use std::collections::BTreeSet;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use super::paths::check_name;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_files: usize,
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
}

/// Largest GNU long-name or PAX record: names are at most three short components.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("not a tar, tar.gz or zip archive")]
    UnknownFormat,
    #[error("archive: {0}")]
    Corrupt(String),
    #[error("archive entry {entry:?}: {problem}")]
    Entry { entry: String, problem: String },
    #[error("archive: {0}")]
    TooLarge(String),
    #[error("archive holds no files")]
    Empty,
    /// Writing to the staging folder failed; `path` is the entry's name, never the
    /// server's folder.
    #[error("writing {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// One file taken out of an archive, written at `path`.
#[derive(Clone, Debug, PartialEq)]
pub struct Extracted {
    pub label: String,
    pub file: String,
    pub path: PathBuf,
    pub bytes: u64,
}

/// Unpacks `archive` into `dest` (an empty folder) and returns its files by label.
pub fn extract(archive: &[u8], dest: &Path, limits: Limits) -> Result<Vec<Extracted>, ArchiveError> {
    let mut sink = Sink { dest, limits, total: 0, seen: BTreeSet::new(), folders: BTreeSet::new(), files: Vec::new() };
    if archive.starts_with(b"PK\x03\x04") || archive.starts_with(b"PK\x05\x06") {
        extract_zip(archive, &mut sink)?;
    } else if archive.starts_with(&[0x1f, 0x8b]) {
        extract_tar(flate2::read::GzDecoder::new(archive), &mut sink)?;
    } else if archive.get(257..262) == Some(b"ustar") {
        extract_tar(archive, &mut sink)?;
    } else {
        return Err(ArchiveError::UnknownFormat);
    }
    layout(sink.files)
}

fn extract_zip(archive: &[u8], sink: &mut Sink) -> Result<(), ArchiveError> {
    let mut zip = zip::ZipArchive::new(Cursor::new(archive)).map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    // Folders and skipped junk count too: an entry costs time even when nothing is written.
    if zip.len() > sink.limits.max_files.saturating_mul(2) {
        return Err(ArchiveError::TooLarge(format!("more than {} entries", sink.limits.max_files.saturating_mul(2))));
    }
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
        let name = entry.name().to_string();
        if entry.is_dir() {
            continue;
        }
        if entry.is_symlink() {
            return Err(entry_err(&name, "symbolic links are not accepted"));
        }
        sink.add(&name, &mut entry)?;
    }
    Ok(())
}

/// Reads the archive's raw entries, applying GNU long names and PAX paths here rather than
/// in the `tar` crate, which would read a record of any size into memory.
fn extract_tar(reader: impl Read, sink: &mut Sink) -> Result<(), ArchiveError> {
    let corrupt = |e: std::io::Error| ArchiveError::Corrupt(e.to_string());
    let mut tar = tar::Archive::new(reader);
    let entries = tar.entries().map_err(corrupt)?.raw(true);
    let mut long_name: Option<Vec<u8>> = None;
    let mut seen = 0usize;
    for entry in entries {
        let mut entry = entry.map_err(corrupt)?;
        seen += 1;
        if seen > sink.limits.max_files.saturating_mul(4) {
            return Err(ArchiveError::TooLarge(format!(
                "more than {} entries",
                sink.limits.max_files.saturating_mul(4)
            )));
        }
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions()
        {
            let record = read_record(&mut entry)?;
            if kind.is_gnu_longname() {
                long_name = Some(record.strip_suffix(&[0]).unwrap_or(&record).to_vec());
            } else if kind.is_pax_local_extensions() {
                for field in tar::PaxExtensions::new(&record) {
                    let field = field.map_err(corrupt)?;
                    match field.key_bytes() {
                        b"path" => long_name = Some(field.value_bytes().to_vec()),
                        // The `tar` crate would read this many bytes as the next file.
                        b"size" => return Err(ArchiveError::Corrupt("PAX size records are not accepted".into())),
                        _ => {}
                    }
                }
            }
            continue;
        }
        let name = match long_name.take() {
            Some(name) => String::from_utf8_lossy(&name).into_owned(),
            None => String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
        };
        match kind {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => sink.add(&name, &mut entry)?,
            other => return Err(entry_err(&name, &format!("entries of type {other:?} are not accepted"))),
        }
    }
    Ok(())
}

/// A long-name or PAX record, at most [`MAX_RECORD_BYTES`].
fn read_record(entry: &mut impl Read) -> Result<Vec<u8>, ArchiveError> {
    let mut record = Vec::new();
    entry.take(MAX_RECORD_BYTES + 1).read_to_end(&mut record).map_err(|e| ArchiveError::Corrupt(e.to_string()))?;
    if record.len() as u64 > MAX_RECORD_BYTES {
        return Err(ArchiveError::TooLarge(format!("a long-name or PAX record of more than {MAX_RECORD_BYTES} bytes")));
    }
    Ok(record)
}

fn entry_err(entry: &str, problem: &str) -> ArchiveError {
    ArchiveError::Entry { entry: entry.to_string(), problem: problem.to_string() }
}

struct Sink<'a> {
    dest: &'a Path,
    limits: Limits,
    total: u64,
    /// Every file's path, and every folder a file is in: a name in both is a clash.
    seen: BTreeSet<String>,
    folders: BTreeSet<String>,
    files: Vec<(Vec<String>, PathBuf, u64)>,
}

impl Sink<'_> {
    /// Checks an entry's name and writes it below `dest` under the same relative path.
    fn add(&mut self, name: &str, reader: &mut impl Read) -> Result<(), ArchiveError> {
        let Some(parts) = entry_parts(name)? else { return Ok(()) };
        let joined = parts.join("/");
        if self.folders.contains(&joined) {
            return Err(entry_err(name, "is a file where another entry has a folder"));
        }
        let parents: Vec<String> = (1..parts.len()).filter_map(|n| parts.get(..n)).map(|p| p.join("/")).collect();
        if parents.iter().any(|p| self.seen.contains(p)) {
            return Err(entry_err(name, "lies in a folder that another entry has as a file"));
        }
        if !self.seen.insert(joined) {
            return Err(entry_err(name, "appears twice"));
        }
        self.folders.extend(parents);
        if self.files.len() == self.limits.max_files {
            return Err(ArchiveError::TooLarge(format!("more than {} files", self.limits.max_files)));
        }
        let path = parts.iter().fold(self.dest.to_path_buf(), |p, c| p.join(c));
        let io = |source| ArchiveError::Io { path: name.to_string(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let budget = self.limits.max_file_bytes.min(self.limits.max_total_bytes - self.total);
        let mut out = std::fs::File::create_new(&path).map_err(io)?;
        let written = std::io::copy(&mut reader.take(budget + 1), &mut out).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                ArchiveError::Corrupt(format!("{name}: {e}"))
            }
            _ => io(e),
        })?;
        if written > budget {
            return Err(ArchiveError::TooLarge(if budget == self.limits.max_file_bytes {
                format!("{name} unpacks to more than {} bytes", self.limits.max_file_bytes)
            } else {
                format!("the files unpack to more than {} bytes", self.limits.max_total_bytes)
            }));
        }
        self.total += written;
        self.files.push((parts, path, written));
        Ok(())
    }
}

/// The checked components of an entry name; `None` for entries to skip (macOS metadata,
/// hidden files such as `.DS_Store`).
fn entry_parts(name: &str) -> Result<Option<Vec<String>>, ArchiveError> {
    if name.contains('\\') {
        return Err(entry_err(name, "backslashes are not accepted in names"));
    }
    if name.starts_with('/') {
        return Err(entry_err(name, "absolute paths are not accepted"));
    }
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err(entry_err(name, "'..' is not accepted"));
    }
    if parts.first() == Some(&"__MACOSX") || parts.iter().any(|p| p.starts_with('.')) {
        return Ok(None);
    }
    if parts.is_empty() {
        return Err(entry_err(name, "names no file"));
    }
    if parts.len() > 3 {
        return Err(entry_err(
            name,
            "lies too deep: expected <label>/<file>, or all under one folder at <folder>/<label>/<file>",
        ));
    }
    for part in &parts {
        check_name("archive entry name", part).map_err(|e| entry_err(name, &e.to_string()))?;
    }
    Ok(Some(parts.into_iter().map(String::from).collect()))
}

/// Maps entries to (label, file): every file at `<label>/<file>`, or every file at
/// `<folder>/<label>/<file>` under one shared top-level folder.
fn layout(files: Vec<(Vec<String>, PathBuf, u64)>) -> Result<Vec<Extracted>, ArchiveError> {
    let Some((first, ..)) = files.first() else {
        return Err(ArchiveError::Empty);
    };
    let (depth, top) = (first.len(), first.first().cloned().unwrap_or_default());
    let fits = |p: &[String]| match p {
        [_, _] => depth == 2,
        [folder, _, _] => depth == 3 && *folder == top,
        _ => false,
    };
    if let Some((odd, ..)) = files.iter().find(|(p, ..)| !fits(p)) {
        return Err(entry_err(
            &odd.join("/"),
            "expected every file at <label>/<file>, or all under one folder at <folder>/<label>/<file>",
        ));
    }
    Ok(files
        .into_iter()
        .filter_map(|(p, path, bytes)| match p.as_slice() {
            [.., label, file] => Some(Extracted { label: label.clone(), file: file.clone(), path, bytes }),
            _ => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const LIMITS: Limits = Limits { max_files: 10, max_file_bytes: 1000, max_total_bytes: 1500 };

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // set_path refuses '..'; write the raw name like a hostile archive would.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn labels(files: &[Extracted]) -> Vec<(String, String, u64)> {
        files.iter().map(|f| (f.label.clone(), f.file.clone(), f.bytes)).collect()
    }

    #[test]
    fn tar_zip_and_tar_gz_of_class_folders_unpack_by_label() {
        let entries: &[(&str, &[u8])] = &[("normal/a.csv", b"1\n2\n"), ("ball/b.csv", b"3\n")];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar_of(entries)).unwrap();
        for archive in [tar_of(entries), zip_of(entries), gz.finish().unwrap()] {
            let dir = tempfile::tempdir().unwrap();
            let files = extract(&archive, dir.path(), LIMITS).unwrap();
            assert_eq!(labels(&files), vec![("normal".into(), "a.csv".into(), 4), ("ball".into(), "b.csv".into(), 2)]);
            assert_eq!(std::fs::read(&files[0].path).unwrap(), b"1\n2\n");
            assert!(files[0].path.starts_with(dir.path()));
        }
    }

    #[test]
    fn one_top_level_folder_is_allowed_and_junk_is_skipped() {
        let archive = zip_of(&[
            ("set/normal/a.csv", b"1"),
            ("set/ball/b.csv", b"2"),
            ("__MACOSX/set/._a.csv", b"x"),
            ("set/.DS_Store", b"x"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let files = extract(&archive, dir.path(), LIMITS).unwrap();
        assert_eq!(labels(&files), vec![("normal".into(), "a.csv".into(), 1), ("ball".into(), "b.csv".into(), 1)]);
    }

    #[test]
    fn hostile_entries_are_refused_and_nothing_lands_outside() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        for name in ["../evil.csv", "normal/../../evil.csv", "/abs/evil.csv", "a\\b/c.csv"] {
            for archive in [tar_of(&[(name, b"x")]), zip_of(&[(name, b"x")])] {
                let err = extract(&archive, &dest, LIMITS).unwrap_err();
                assert!(matches!(err, ArchiveError::Entry { .. }), "{name}: {err}");
            }
        }
        assert!(!outer.path().join("evil.csv").exists());
        assert!(!Path::new("/abs/evil.csv").exists());

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "normal/link.csv", "/etc/passwd").unwrap();
        let err = extract(&b.into_inner().unwrap(), &dest, LIMITS).unwrap_err();
        assert!(err.to_string().contains("Symlink"), "{err}");
    }

    #[test]
    fn size_and_count_limits_are_enforced_while_unpacking() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![0u8; 1001];
        let err = extract(&zip_of(&[("a/x.csv", &big)]), dir.path(), LIMITS).unwrap_err();
        assert!(err.to_string().contains("more than 1000 bytes"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let part = vec![0u8; 800];
        let err = extract(&tar_of(&[("a/x.csv", &part), ("a/y.csv", &part)]), dir.path(), LIMITS).unwrap_err();
        assert!(err.to_string().contains("1500 bytes"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..11).map(|i| format!("a/{i}.csv")).collect();
        let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"1"[..])).collect();
        let err = extract(&zip_of(&many), dir.path(), LIMITS).unwrap_err();
        assert!(err.to_string().contains("more than 10 files"), "{err}");
    }

    #[test]
    fn mixed_layouts_empty_archives_and_garbage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = extract(&zip_of(&[("a/x.csv", b"1"), ("b/c/y.csv", b"2")]), dir.path(), LIMITS).unwrap_err();
        assert!(err.to_string().contains("<label>/<file>"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = extract(&zip_of(&[("x.csv", b"1")]), dir.path(), LIMITS).unwrap_err();
        assert!(err.to_string().contains("<label>/<file>"), "{err}");
        assert!(matches!(extract(&zip_of(&[]), dir.path(), LIMITS), Err(ArchiveError::Empty)));
        assert!(matches!(extract(b"hello world", dir.path(), LIMITS), Err(ArchiveError::UnknownFormat)));
        let mut truncated = zip_of(&[("a/x.csv", &[7u8; 500])]);
        truncated.truncate(truncated.len() / 2);
        assert!(extract(&truncated, dir.path(), LIMITS).is_err());
    }
}
