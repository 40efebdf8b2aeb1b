//! PNG and JPEG images, as grayscale in [0, 1] (8-bit pixels / 255), the scale of MNIST.

use std::io::Cursor;

use image::ImageReader;

use super::{DataError, Limits};

/// Decodes image bytes: `(values, height, width)`, row-major.
pub fn decode_image(bytes: &[u8], limits: &Limits) -> Result<(Vec<f32>, usize, usize), DataError> {
    decode(bytes, "input", limits)
}

/// The size comes from the header and is checked before a pixel is decoded; the
/// decoder's own limits (`image::Limits`) hold it to the same bounds while it works.
pub(crate) fn decode(bytes: &[u8], file: &str, limits: &Limits) -> Result<(Vec<f32>, usize, usize), DataError> {
    let unreadable =
        |e: image::ImageError| DataError::malformed(file, format!("not a readable PNG or JPEG image: {e}"));
    let reader = || ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| unreadable(e.into()));
    let (width, height) = reader()?.into_dimensions().map_err(unreadable)?;
    limits.check_image(file, width, height)?;
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_image_side);
    decoder_limits.max_image_height = Some(limits.max_image_side);
    // The decoded image in its own format (up to 16 bytes a pixel), then as f32 gray.
    decoder_limits.max_alloc = Some(limits.max_image_pixels.saturating_mul(20));
    let mut reader = reader()?;
    reader.limits(decoder_limits);
    let image = reader.decode().map_err(unreadable)?;
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
        let (values, h, w) = decode_image(&png, &Limits::DEFAULT).unwrap();
        assert_eq!((h, w), (2, 3));
        let expected = [0.0, 0.2, 1.0, 0.4, 0.6, 0.8];
        assert!(values.iter().zip(expected).all(|(v, e)| (v - e).abs() < 1e-6), "{values:?}");
        let err = decode(b"not an image", "cat.png", &Limits::DEFAULT).unwrap_err().to_string();
        assert!(err.contains("cat.png") && err.contains("not a readable"), "{err}");
        let small = Limits { max_image_side: 2, ..Limits::DEFAULT };
        let err = decode(&png, "big.png", &small).unwrap_err().to_string();
        assert!(err.contains("3x2 image") && err.contains("--max-image-side"), "{err}");
    }
}
