//! MNIST's IDX files (unsigned bytes), gzipped or not: the gzip magic decides, not the name.

use std::io::Read;
use std::path::Path;

use super::error::read_file;
use super::DataError;

/// Images from an `idx3-ubyte` file: `(pixels, count, rows, cols)`, image `i` at
/// `pixels[i * rows * cols..]`, row-major.
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, usize, usize, usize), DataError> {
    let (data, dims) = read(path, 3)?;
    Ok((data, dims[0], dims[1], dims[2]))
}

/// Labels from an `idx1-ubyte` file.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    Ok(read(path, 1)?.0)
}

fn read(path: &Path, want_dims: usize) -> Result<(Vec<u8>, Vec<usize>), DataError> {
    let file = path.display().to_string();
    let raw = read_file(path)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| DataError::malformed(&file, format!("gzip data does not inflate: {e}")))?;
        out
    } else {
        raw
    };
    decode(&bytes, &file, want_dims)
}

fn decode(bytes: &[u8], file: &str, want_dims: usize) -> Result<(Vec<u8>, Vec<usize>), DataError> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::malformed(file, "not an IDX file (bad magic number)"));
    }
    if bytes[2] != 0x08 {
        return Err(DataError::unsupported(
            file,
            format!("IDX element type 0x{:02x} (only unsigned bytes, 0x08)", bytes[2]),
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims != want_dims {
        return Err(DataError::malformed(file, format!("IDX file has {ndims} dimension(s), expected {want_dims}")));
    }
    let header = 4 + 4 * ndims;
    let dims: Vec<usize> = bytes
        .get(4..header)
        .ok_or_else(|| DataError::malformed(file, "IDX header cut short"))?
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count: usize = dims.iter().product();
    let data = &bytes[header..];
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
        let (data, dims) = decode(&bytes, "x", 3).unwrap();
        assert_eq!((data, dims), (vec![1, 2, 3, 4], vec![2, 1, 2]));
        let err = decode(&bytes[..19], "short-idx", 3).unwrap_err().to_string();
        assert!(err.contains("short-idx") && err.contains("declares 4 bytes"), "{err}");
    }
}
