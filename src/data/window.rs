//! Cutting a signal into windows: with a stride shorter than the window for training
//! (overlap, more samples); for evaluation stride = length (each sample once) unless a
//! test or validation stride asks for overlapping windows.

use std::ops::Range;

/// The ranges of every whole window of `length` samples, `stride` apart, that fits in a
/// signal of `signal_len` samples. Nothing when `length` or `stride` is 0 or the signal is
/// shorter than one window.
pub fn windows(signal_len: usize, length: usize, stride: usize) -> impl ExactSizeIterator<Item = Range<usize>> {
    let count = if length == 0 || stride == 0 || signal_len < length { 0 } else { (signal_len - length) / stride + 1 };
    (0..count).map(move |i| i * stride..i * stride + length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_fit_inside_and_are_stride_apart() {
        let w: Vec<_> = windows(10, 4, 3).collect();
        assert_eq!(w, vec![0..4, 3..7, 6..10]);
        let w: Vec<_> = windows(11, 4, 4).collect();
        assert_eq!(w, vec![0..4, 4..8]);
        assert_eq!(windows(3, 4, 1).count(), 0);
        assert_eq!(windows(10, 4, 0).count(), 0);
    }
}
