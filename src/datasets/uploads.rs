//! Files uploaded over HTTP, one by one or as an archive, checked with the data readers on
//! arrival (a file that cannot be read is refused then, not at training time) and stored
//! at `<data-root>/datasets/<name>/<label>/<file>`. Blocking: call from a blocking task.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::archive::{self, ArchiveError, Limits};
use super::paths::{check_name, PathError};
use crate::data::{self, decode_image, decode_recording, DataError, ReadOptions};
use crate::store::NewDatasetFile;

/// The folder under the data root that holds uploaded datasets.
pub const UPLOADS_DIR: &str = "datasets";

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Name(#[from] PathError),
    #[error("{file}: unsupported file type; expected .wav, .csv, .txt, .tsv, .npy, .mat, .png or .jpg")]
    UnsupportedType { file: String },
    #[error("{label}/{file}: {source}")]
    Unreadable { label: String, file: String, source: Box<DataError> },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// What kind of file a name says it is: a recording or an image, by extension.
pub fn file_kind(file: &str) -> Option<&'static str> {
    let ext = Path::new(file).extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "wav" | "wave" => "wav",
        "csv" | "txt" | "tsv" => "csv",
        "npy" => "npy",
        "mat" => "mat",
        "png" => "png",
        "jpg" | "jpeg" => "jpeg",
        _ => return None,
    })
}

/// Uploaded datasets under one data root. The root may be read-only for a service that
/// takes no uploads: `datasets/` is only created by the first upload.
#[derive(Clone, Debug)]
pub struct Uploads {
    /// The canonical data root.
    root: PathBuf,
    /// `<data-root>/datasets`.
    dir: PathBuf,
    limits: Limits,
    /// What one uploaded file may make the readers take on when it is checked.
    decoding: data::Limits,
}

impl Uploads {
    /// `root` must be canonical (see [`super::canonical_root`]).
    pub fn new(root: &Path, limits: Limits, decoding: data::Limits) -> Self {
        Self { root: root.to_path_buf(), dir: root.join(UPLOADS_DIR), limits, decoding }
    }

    /// Creates `<data-root>/datasets` if needed and checks that it really lies in the root
    /// (a symlink placed there by hand must not redirect writes).
    fn uploads_dir(&self) -> Result<PathBuf, UploadError> {
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        self.inside_root(&self.dir)
    }

    /// An I/O error naming the path inside the data root, never the server's folders.
    fn io<'a>(&'a self, path: &'a Path) -> impl Fn(std::io::Error) -> UploadError + 'a {
        move |source| UploadError::Io { path: self.shown(path), source }
    }

    fn shown(&self, path: &Path) -> String {
        path.strip_prefix(&self.root).unwrap_or(Path::new("<outside the data root>")).display().to_string()
    }

    fn inside_root(&self, dir: &Path) -> Result<PathBuf, UploadError> {
        let real = dir.canonicalize().map_err(self.io(dir))?;
        if !real.starts_with(&self.root) {
            return Err(PathError::Refused {
                path: self.shown(dir),
                problem: "leads outside the data root (through a symbolic link)".into(),
            }
            .into());
        }
        Ok(real)
    }

    /// The folder of dataset `name` (which may not exist yet).
    pub fn dataset_dir(&self, name: &str) -> Result<PathBuf, UploadError> {
        check_name("dataset name", name)?;
        Ok(self.dir.join(name))
    }

    /// Path of the dataset relative to the data root, as a job names it.
    pub fn relative_path(name: &str) -> String {
        format!("{UPLOADS_DIR}/{name}")
    }

    /// Checks and stores one file; replaces an earlier file of the same label and name.
    pub fn add_file(
        &self,
        dataset: &str,
        label: &str,
        file: &str,
        bytes: &[u8],
        options: &ReadOptions,
    ) -> Result<NewDatasetFile, UploadError> {
        let dir = self.dataset_dir(dataset)?;
        check_name("label", label)?;
        check_name("file name", file)?;
        let kind = check_content(label, file, bytes, &self.with_limits(options))?;
        let target_dir = self.class_dir(&dir, label)?;
        // Written beside the target under a hidden name, then renamed: readers (and the
        // dataset loader) never see half a file.
        let partial = target_dir.join(format!(".{file}.{}.partial", uuid::Uuid::new_v4()));
        std::fs::write(&partial, bytes).map_err(self.io(&partial))?;
        let target = target_dir.join(file);
        std::fs::rename(&partial, &target).map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            self.io(&target)(e)
        })?;
        Ok(record(label, file, bytes, kind))
    }

    /// Unpacks an archive of class folders, checks every file, and only then moves them
    /// into the dataset: a refused archive leaves the dataset as it was.
    pub fn add_archive(
        &self,
        dataset: &str,
        bytes: &[u8],
        options: &ReadOptions,
    ) -> Result<Vec<NewDatasetFile>, UploadError> {
        let dir = self.dataset_dir(dataset)?;
        let staging = self.uploads_dir()?.join(format!(".staging-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&staging).map_err(self.io(&staging))?;
        let result = self.add_staged(&dir, &staging, bytes, &self.with_limits(options));
        let _ = std::fs::remove_dir_all(&staging);
        result
    }

    fn add_staged(
        &self,
        dir: &Path,
        staging: &Path,
        bytes: &[u8],
        options: &ReadOptions,
    ) -> Result<Vec<NewDatasetFile>, UploadError> {
        let files = archive::extract(bytes, staging, self.limits)?;
        let mut records = Vec::with_capacity(files.len());
        for f in &files {
            let content = std::fs::read(&f.path).map_err(self.io(&f.path))?;
            let kind = check_content(&f.label, &f.file, &content, options)?;
            records.push(record(&f.label, &f.file, &content, kind));
        }
        for f in &files {
            let target = self.class_dir(dir, &f.label)?.join(&f.file);
            std::fs::rename(&f.path, &target).map_err(self.io(&target))?;
        }
        Ok(records)
    }

    /// Creates `<dataset>/<label>` and checks that it really lies in the data root.
    fn class_dir(&self, dataset_dir: &Path, label: &str) -> Result<PathBuf, UploadError> {
        self.uploads_dir()?;
        let dir = dataset_dir.join(label);
        std::fs::create_dir_all(&dir).map_err(self.io(&dir))?;
        self.inside_root(&dir)
    }

    fn with_limits(&self, options: &ReadOptions) -> ReadOptions {
        ReadOptions { limits: self.decoding, ..options.clone() }
    }
}

/// Decodes the file the way training will; returns its kind.
fn check_content(label: &str, file: &str, bytes: &[u8], options: &ReadOptions) -> Result<&'static str, UploadError> {
    let kind = file_kind(file).ok_or_else(|| UploadError::UnsupportedType { file: format!("{label}/{file}") })?;
    let unreadable =
        |source| UploadError::Unreadable { label: label.into(), file: file.into(), source: Box::new(source) };
    match kind {
        "png" | "jpeg" => {
            decode_image(bytes, &options.limits).map_err(unreadable)?;
        }
        _ => {
            let recording = decode_recording(bytes, file, options).map_err(unreadable)?;
            if recording.channels.first().is_none_or(|c| c.is_empty()) {
                return Err(unreadable(DataError::Malformed {
                    file: file.into(),
                    problem: "the recording holds no samples".into(),
                }));
            }
        }
    }
    Ok(kind)
}

fn record(label: &str, file: &str, bytes: &[u8], kind: &str) -> NewDatasetFile {
    NewDatasetFile {
        label: label.into(),
        file: file.into(),
        bytes: bytes.len() as i64,
        kind: kind.into(),
        sha256: hex::encode(Sha256::digest(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const LIMITS: Limits = Limits { max_files: 100, max_file_bytes: 1 << 20, max_total_bytes: 1 << 22 };

    fn wav(samples: &[f32]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 12_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut out = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    fn uploads() -> (tempfile::TempDir, Uploads) {
        let dir = tempfile::tempdir().unwrap();
        let root = super::super::canonical_root(dir.path()).unwrap();
        (dir, Uploads::new(&root, LIMITS, data::Limits::DEFAULT))
    }

    #[test]
    fn a_readable_file_is_stored_under_its_label_and_a_corrupt_one_refused() {
        let (dir, up) = uploads();
        let bytes = wav(&[0.1, -0.2, 0.3]);
        let rec = up.add_file("set", "normal", "a.wav", &bytes, &ReadOptions::default()).unwrap();
        assert_eq!((rec.kind.as_str(), rec.bytes), ("wav", bytes.len() as i64));
        let stored = dir.path().join("datasets/set/normal/a.wav");
        assert_eq!(std::fs::read(&stored).unwrap(), bytes);

        let err = up.add_file("set", "normal", "b.wav", b"RIFF garbage", &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, UploadError::Unreadable { .. }) && err.to_string().contains("normal/b.wav"), "{err}");
        let err = up.add_file("set", "normal", "c.csv", b"1,2\nx,3\n", &ReadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("normal/c.csv"), "{err}");
        let err = up.add_file("set", "normal", "d.docx", b"1", &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, UploadError::UnsupportedType { .. }), "{err}");
        let err = up.add_file("set", "..", "e.csv", b"1\n", &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, UploadError::Name(_)), "{err}");
        let err = up.add_file("../x", "normal", "e.csv", b"1\n", &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, UploadError::Name(_)), "{err}");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("datasets/set/normal"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["a.wav"], "nothing else was written");
    }

    #[test]
    fn an_archive_is_stored_whole_or_not_at_all() {
        let (dir, up) = uploads();
        let zip = |entries: &[(&str, Vec<u8>)]| {
            let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            for (name, data) in entries {
                w.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
                w.write_all(data).unwrap();
            }
            w.finish().unwrap().into_inner()
        };
        let good = zip(&[("normal/a.wav", wav(&[0.5; 64])), ("ball/b.csv", b"1\n2\n3\n".to_vec())]);
        let recs = up.add_archive("set", &good, &ReadOptions::default()).unwrap();
        assert_eq!(
            recs.iter().map(|r| (r.label.as_str(), r.file.as_str())).collect::<Vec<_>>(),
            vec![("normal", "a.wav"), ("ball", "b.csv")]
        );
        assert!(dir.path().join("datasets/set/ball/b.csv").is_file());

        let bad = zip(&[("inner/c.wav", wav(&[0.5; 64])), ("inner/d.wav", b"RIFF not really".to_vec())]);
        let err = up.add_archive("set", &bad, &ReadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("inner/d.wav"), "{err}");
        assert!(!dir.path().join("datasets/set/inner").exists(), "a refused archive leaves nothing");
        let leftovers: Vec<_> =
            std::fs::read_dir(dir.path().join("datasets")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec!["set"], "the staging folder is removed");
    }

    #[test]
    fn a_symlinked_class_folder_leading_out_is_refused() {
        let (dir, up) = uploads();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("datasets/set")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("datasets/set/normal")).unwrap();
        let err = up.add_file("set", "normal", "a.csv", b"1\n2\n", &ReadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("outside the data root"), "{err}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
