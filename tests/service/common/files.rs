//! Files written byte by byte, so that a test can make their headers say anything: WAV,
//! `.npy`, MAT (level 5, plain or compressed), PNG, tar and gzip.

use std::io::Write;

/// A PCM WAV file whose header says `rate`, `channels`, `bits` and a data chunk of
/// `data_len` bytes, followed by `data`.
pub fn wav_header(rate: u32, channels: u16, bits: u16, data_len: u32, data: &[u8]) -> Vec<u8> {
    let block = channels.wrapping_mul(bits / 8);
    let mut out = b"RIFF".to_vec();
    out.extend((36 + data.len() as u32).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(channels.to_le_bytes());
    out.extend(rate.to_le_bytes());
    out.extend(rate.wrapping_mul(block as u32).to_le_bytes());
    out.extend(block.to_le_bytes());
    out.extend(bits.to_le_bytes());
    out.extend(b"data");
    out.extend(data_len.to_le_bytes());
    out.extend(data);
    out
}

/// A `.npy` file of little-endian f32 whose header says `shape` (a Python tuple), with
/// `data` after it.
pub fn npy(shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
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

fn mat_element(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_le_bytes().to_vec();
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out.resize(out.len().div_ceil(8) * 8, 0);
    out
}

/// A MAT-file with one double matrix `X1_DE_time` whose dimensions say `rows x cols` and
/// whose values are `values` (which may be fewer), compressed when asked.
pub fn mat(rows: u32, cols: u32, values: &[u8], compressed: bool) -> Vec<u8> {
    let mut body = mat_element(6, &[6, 0, 0, 0, 0, 0, 0, 0]);
    let dims: Vec<u8> = [rows, cols].iter().flat_map(|d| d.to_le_bytes()).collect();
    body.extend(mat_element(5, &dims));
    body.extend(mat_element(1, b"X1_DE_time"));
    body.extend(mat_element(9, values));
    let matrix = mat_element(14, &body);
    let mut out = format!("{:<116}", "MATLAB 5.0 MAT-file, written by a drsn test").into_bytes();
    out.extend([0u8; 8]);
    out.extend([0x00, 0x01, b'I', b'M']);
    if compressed {
        let data = zlib(&matrix);
        out.extend(15u32.to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
    } else {
        out.extend(matrix);
    }
    out
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).expect("writing to a Vec");
    z.finish().expect("writing to a Vec")
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).expect("writing to a Vec");
    z.finish().expect("writing to a Vec")
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend(kind);
    out.extend(data);
    out.extend(crc.sum().to_be_bytes());
}

/// A valid 8-bit grayscale PNG of `side` x `side` black pixels: small on the wire, huge
/// once decoded.
pub fn black_png(side: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend(side.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let row = vec![0u8; side as usize + 1];
    for _ in 0..side {
        z.write_all(&row).expect("writing to a Vec");
    }
    png_chunk(&mut out, b"IDAT", &z.finish().expect("writing to a Vec"));
    png_chunk(&mut out, b"IEND", &[]);
    out
}
