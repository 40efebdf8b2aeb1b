//! Datasets on disk: user paths resolved inside the data root, and files uploaded over
//! HTTP stored under `<data-root>/datasets/<name>/<label>/<file>`.
// Decoders and handlers meet untrusted input: no panicking shortcuts outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod archive;
pub mod paths;
pub mod uploads;

pub use archive::{ArchiveError, Extracted, Limits};
pub use paths::{canonical_root, check_name, resolve_inside, PathError};
pub use uploads::{file_kind, UploadError, Uploads, UPLOADS_DIR};
