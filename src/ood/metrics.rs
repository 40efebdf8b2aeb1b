//! Thresholds and the figures that judge a score: plain numbers, no tensors. A score that
//! is not a number counts as out of distribution everywhere (a window that makes the
//! network produce NaN is not one it knows).

/// The score to compare: NaN becomes +inf.
fn key(score: f32) -> f32 {
    if score.is_nan() {
        f32::INFINITY
    } else {
        score
    }
}

/// The lowest threshold that flags at most `rate` of `scores` (flagged: score > threshold).
/// `None` for no scores.
pub fn threshold_at(scores: &[f32], rate: f64) -> Option<f32> {
    let mut sorted: Vec<f32> = scores.iter().copied().map(key).collect();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len();
    let allowed = ((rate.clamp(0.0, 1.0) * n as f64).floor() as usize).min(n.checked_sub(1)?);
    sorted.get(n - 1 - allowed).copied()
}

/// Share of `scores` flagged at `threshold` (above it, or NaN): the false-alarm rate on
/// in-distribution windows, the detection rate on others.
pub fn exceeding_share(scores: &[f32], threshold: f32) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    scores.iter().filter(|&&s| s.is_nan() || s > threshold).count() as f64 / scores.len() as f64
}

/// Area under the ROC curve of telling `outside` from `inside` by score (higher = outside):
/// the probability that a random outside window scores above a random inside one, ties
/// counting half. `None` when either side is empty.
pub fn auroc(inside: &[f32], outside: &[f32]) -> Option<f64> {
    if inside.is_empty() || outside.is_empty() {
        return None;
    }
    // Rank sum (Mann-Whitney U) with average ranks for ties.
    let mut all: Vec<(f32, bool)> =
        inside.iter().map(|&s| (key(s), false)).chain(outside.iter().map(|&s| (key(s), true))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_outside = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_outside += all[i..=j].iter().filter(|(_, out)| *out).count() as f64 * average_rank;
        i = j + 1;
    }
    let (n_in, n_out) = (inside.len() as f64, outside.len() as f64);
    Some((rank_sum_outside - n_out * (n_out + 1.0) / 2.0) / (n_in * n_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_flags_at_most_the_rate() {
        let scores: Vec<f32> = (0..200).map(|i| i as f32).collect();
        let t = threshold_at(&scores, 0.01).unwrap();
        assert_eq!(t, 197.0);
        assert_eq!(exceeding_share(&scores, t), 0.01);
        assert_eq!(threshold_at(&scores, 0.0).unwrap(), 199.0);
        assert_eq!(threshold_at(&[], 0.01), None);
        // NaN counts as the strangest window.
        let t = threshold_at(&[1.0, f32::NAN, 2.0], 0.0).unwrap();
        assert!(t.is_infinite());
        assert_eq!(exceeding_share(&[f32::NAN], 1e30), 1.0);
    }

    #[test]
    fn auroc_counts_pairs_and_ties() {
        assert_eq!(auroc(&[0.0, 1.0], &[2.0, 3.0]), Some(1.0));
        assert_eq!(auroc(&[2.0, 3.0], &[0.0, 1.0]), Some(0.0));
        assert_eq!(auroc(&[1.0], &[1.0]), Some(0.5));
        // 3 of 4 pairs ordered, none tied.
        assert_eq!(auroc(&[0.0, 2.0], &[1.0, 3.0]), Some(0.75));
        assert_eq!(auroc(&[], &[1.0]), None);
    }
}
