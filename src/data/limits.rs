//! Bounds on what a decoder may take on because of what an input says: rates, sample and
//! channel counts, image sizes, inflated bytes. Every size read from a header is checked
//! against these before memory is taken or time spent, so that the cost of a file is
//! bounded by the configuration and not by what the file claims.

use super::DataError;

/// The limits every decoder and the resampler work within. `Default` holds the service's
/// defaults; each field has a `drsn serve` flag of the same name (`--max-samples`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Lowest sampling rate accepted, in Hz.
    pub min_sample_rate: u32,
    /// Highest sampling rate accepted, in Hz.
    pub max_sample_rate: u32,
    /// Largest factor between a signal's rate and the rate it is resampled to (either way).
    pub max_resample_ratio: u32,
    /// Largest numerator or denominator of the reduced rate ratio (`48000:12000` is `4:1`,
    /// `44100:12000` is `147:40`): the resampler's chunks, and so its buffers and its time per
    /// sample, grow with it.
    pub max_rate_block: u32,
    /// Most values (all channels together) one decoded input may hold, after resampling.
    pub max_samples: usize,
    /// Most channels one recording may have.
    pub max_channels: usize,
    /// Widest or tallest image, in pixels.
    pub max_image_side: u32,
    /// Most pixels in one image.
    pub max_image_pixels: u64,
    /// Most bytes a compressed part (a `.mat` variable, a gzip file) may inflate to.
    pub max_inflated_bytes: u64,
    /// Largest file read from disk (training data).
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

impl Limits {
    /// The service's defaults.
    pub const DEFAULT: Limits = Limits {
        min_sample_rate: 1,
        max_sample_rate: 1_000_000,
        max_resample_ratio: 64,
        max_rate_block: 4096,
        max_samples: 32 << 20,
        max_channels: 64,
        max_image_side: 8192,
        max_image_pixels: 16 << 20,
        max_inflated_bytes: 512 << 20,
        max_file_bytes: 1 << 30,
    };

    /// For whole training files (MNIST's training images are 47 million values): the
    /// defaults with room for 256 Mi values per file.
    pub const FILES: Limits = Limits { max_samples: 256 << 20, ..Limits::DEFAULT };

    /// Refuses a rate outside `[min_sample_rate, max_sample_rate]`; `what` says whose rate.
    pub fn check_rate(&self, file: &str, what: &str, rate: u32) -> Result<(), DataError> {
        if rate < self.min_sample_rate || rate > self.max_sample_rate {
            return Err(DataError::SampleRate {
                file: file.to_string(),
                problem: format!(
                    "{what} {rate} Hz is outside the supported range {}..={} Hz (--min-sample-rate, --max-sample-rate)",
                    self.min_sample_rate, self.max_sample_rate
                ),
            });
        }
        Ok(())
    }

    /// Refuses more than `max_samples` values; `count` is `None` when the count itself
    /// overflowed (a header's sizes multiplied).
    pub fn check_samples(&self, file: &str, what: &str, count: Option<usize>) -> Result<usize, DataError> {
        match count {
            Some(n) if n <= self.max_samples => Ok(n),
            _ => Err(DataError::TooLarge {
                file: file.to_string(),
                problem: format!(
                    "{what} {} values, more than the limit of {} (--max-samples)",
                    count.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string()),
                    self.max_samples
                ),
            }),
        }
    }

    pub fn check_channels(&self, file: &str, channels: usize) -> Result<(), DataError> {
        if channels > self.max_channels {
            return Err(DataError::TooLarge {
                file: file.to_string(),
                problem: format!("{channels} channels, more than the limit of {} (--max-channels)", self.max_channels),
            });
        }
        Ok(())
    }

    pub fn check_image(&self, file: &str, width: u32, height: u32) -> Result<(), DataError> {
        let pixels = u64::from(width) * u64::from(height);
        if width > self.max_image_side || height > self.max_image_side || pixels > self.max_image_pixels {
            return Err(DataError::TooLarge {
                file: file.to_string(),
                problem: format!(
                    "a {width}x{height} image, over the limits of {} pixels a side (--max-image-side) and {} pixels (--max-image-pixels)",
                    self.max_image_side, self.max_image_pixels
                ),
            });
        }
        Ok(())
    }

    /// Inflates `compressed` through `decoder` up to `max_inflated_bytes`; more is an error.
    pub(crate) fn inflate(&self, file: &str, what: &str, decoder: impl std::io::Read) -> Result<Vec<u8>, DataError> {
        use std::io::Read;
        let mut out = Vec::new();
        decoder
            .take(self.max_inflated_bytes.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| DataError::malformed(file, format!("{what} does not inflate: {e}")))?;
        if out.len() as u64 > self.max_inflated_bytes {
            return Err(DataError::TooLarge {
                file: file.to_string(),
                problem: format!(
                    "{what} inflates to more than the limit of {} bytes (--max-inflated-bytes)",
                    self.max_inflated_bytes
                ),
            });
        }
        Ok(out)
    }
}

/// The product of sizes read from a header, `None` on overflow.
pub(crate) fn product(sizes: &[usize]) -> Option<usize> {
    sizes.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_names_its_limit_and_value() {
        let l = Limits::default();
        let e = l.check_rate("x.wav", "the WAV header's rate", 4_294_967_291).unwrap_err().to_string();
        assert!(e.contains("4294967291 Hz") && e.contains("1000000") && e.contains("--max-sample-rate"), "{e}");
        let e = l.check_samples("x.npy", "shape (2, 3) holds", product(&[usize::MAX, 2])).unwrap_err().to_string();
        assert!(e.contains("more than 2^64") && e.contains("--max-samples"), "{e}");
        assert_eq!(l.check_samples("x", "", Some(10)).unwrap(), 10);
        let e = l.check_image("a.png", 16384, 16384).unwrap_err().to_string();
        assert!(e.contains("16384x16384") && e.contains("--max-image-side"), "{e}");
        let bomb = vec![0u8; 1 << 20];
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, &bomb).unwrap();
        let small = Limits { max_inflated_bytes: 1000, ..l };
        let packed = z.finish().unwrap();
        let e = small.inflate("b.mat", "a variable", flate2::read::ZlibDecoder::new(&packed[..])).unwrap_err();
        assert!(e.to_string().contains("more than the limit of 1000 bytes"), "{e}");
    }
}
