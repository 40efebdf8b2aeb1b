//! PNG and JPEG images, as grayscale in [0, 1] (8-bit pixels / 255), the scale of MNIST.

use super::DataError;

/// Decodes image bytes: `(values, height, width)`, row-major.
pub fn decode_image(bytes: &[u8]) -> Result<(Vec<f32>, usize, usize), DataError> {
    decode(bytes, "input")
}

pub(crate) fn decode(bytes: &[u8], file: &str) -> Result<(Vec<f32>, usize, usize), DataError> {
    let image = image::load_from_memory(bytes)
        .map_err(|e| DataError::malformed(file, format!("not a readable PNG or JPEG image: {e}")))?;
    let gray = image.to_luma32f();
    let (width, height) = (gray.width() as usize, gray.height() as usize);
    if width == 0 || height == 0 {
        return Err(DataError::malformed(file, "image has no pixels"));
    }
    Ok((gray.into_raw(), height, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_png_decodes_to_grayscale_in_zero_one() {
        let img = image::GrayImage::from_raw(3, 2, vec![0, 51, 255, 102, 153, 204]).unwrap();
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let (values, h, w) = decode_image(&png).unwrap();
        assert_eq!((h, w), (2, 3));
        let expected = [0.0, 0.2, 1.0, 0.4, 0.6, 0.8];
        assert!(values.iter().zip(expected).all(|(v, e)| (v - e).abs() < 1e-6), "{values:?}");
        let err = decode(b"not an image", "cat.png").unwrap_err().to_string();
        assert!(err.contains("cat.png") && err.contains("not a readable"), "{err}");
    }
}
