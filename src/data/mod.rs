//! Everything between files on disk and tensors: decoding, windowing, resampling,
//! normalisation, noise and splits. Nothing here knows about HTTP or SQL.

mod normalize;

pub use normalize::Normalization;

/// The folder holding the real data sets (CWRU, MNIST): `DRSN_SHARED_DATA` or `../shared/data`.
pub fn shared_data_root() -> std::path::PathBuf {
    std::env::var_os("DRSN_SHARED_DATA")
        .map(Into::into)
        .unwrap_or_else(|| std::path::PathBuf::from("../shared/data"))
}
