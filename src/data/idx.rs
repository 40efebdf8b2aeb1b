//! MNIST's IDX files (unsigned bytes), gzipped or not: the gzip magic decides, not the name.

use std::path::Path;

use super::error::read_file;
use super::limits::product;
use super::{DataError, Limits};

/// Images from an `idx3-ubyte` file: `(pixels, count, rows, cols)`, image `i` at
/// `pixels[i * rows * cols..]`, row-major.
pub fn read_idx_images(path: &Path, limits: &Limits) -> Result<(Vec<u8>, usize, usize, usize), DataError> {
    let file = path.display().to_string();
    let (data, [count, rows, cols]) = decode_idx::<3>(&read_file(path, limits)?, &file, limits)?;
    Ok((data, count, rows, cols))
}

/// Labels from an `idx1-ubyte` file.
pub fn read_idx_labels(path: &Path, limits: &Limits) -> Result<Vec<u8>, DataError> {
    Ok(decode_idx::<1>(&read_file(path, limits)?, &path.display().to_string(), limits)?.0)
}

/// Decodes an IDX file of unsigned bytes with `N` dimensions, gzipped or not: the data
/// and its dimensions. `file` names it in errors.
pub fn decode_idx<const N: usize>(raw: &[u8], file: &str, limits: &Limits) -> Result<(Vec<u8>, [usize; N]), DataError> {
    let inflated;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        inflated = limits.inflate(file, "gzip data", flate2::read::GzDecoder::new(raw))?;
        &inflated[..]
    } else {
        raw
    };
    let (magic, rest) = bytes.split_at_checked(4).ok_or_else(|| DataError::malformed(file, "IDX header cut short"))?;
    let &[0, 0, kind, ndims] = magic else {
        return Err(DataError::malformed(file, "not an IDX file (bad magic number)"));
    };
    if kind != 0x08 {
        return Err(DataError::unsupported(file, format!("IDX element type 0x{kind:02x} (only unsigned bytes, 0x08)")));
    }
    let ndims = usize::from(ndims);
    if ndims != N {
        return Err(DataError::malformed(file, format!("IDX file has {ndims} dimension(s), expected {N}")));
    }
    let (header, data) =
        rest.split_at_checked(4 * ndims).ok_or_else(|| DataError::malformed(file, "IDX header cut short"))?;
    let mut dims = [0usize; N];
    for (d, c) in dims.iter_mut().zip(header.chunks_exact(4)) {
        let mut be = [0u8; 4];
        be.copy_from_slice(c);
        *d = u32::from_be_bytes(be) as usize;
    }
    let count = limits.check_samples(file, &format!("the IDX header ({dims:?}) declares"), product(&dims))?;
    if data.len() != count {
        return Err(DataError::malformed(
            file,
            format!("IDX header declares {count} bytes of data ({dims:?}), the file holds {}", data.len()),
        ));
    }
    Ok((data.to_vec(), dims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_tiny_image_file_and_rejects_a_short_one() {
        let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        bytes.extend([1, 2, 3, 4]);
        let (data, dims) = decode_idx::<3>(&bytes, "x", &Limits::DEFAULT).unwrap();
        assert_eq!((data, dims), (vec![1, 2, 3, 4], [2, 1, 2]));
        let err = decode_idx::<3>(&bytes[..19], "short-idx", &Limits::DEFAULT).unwrap_err().to_string();
        assert!(err.contains("short-idx") && err.contains("declares 4 bytes"), "{err}");
    }
}
