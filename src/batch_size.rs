//! The batch size of a run that names none. Pure Rust.
//!
//! A batch holds its row locks until it commits, so its duration should sit
//! just under `hr_migrations.batch_target_ms`. After each batch, its
//! duration as a share of the target (its *efficiency*) enters an
//! exponential moving average, the newest batch weighing 0.4. While the
//! average is within 90–95% of the target the size stays; otherwise it is
//! scaled by 0.95 / average, at most ×1.2 up per batch. One batch's share is
//! capped at 1.5 before it enters the average, so one slow batch (a
//! checkpoint, a lock wait, a cold cache) takes the size down by about 20%
//! for a few batches, not by half, and the size does not swing back and
//! forth around the target the way a one-batch proportional rule does;
//! sustained slowness still shrinks it by a third per batch. The shape is GitLab's
//! batched background migrations' optimizer (`batch_optimizer.rb`: a moving
//! average of time efficiency, a 90–95% band, ×1.2 at most).

/// Weight of the newest batch in the moving average.
pub const WEIGHT: f64 = 0.4;
/// The band of the average, as shares of the target, where the size stays.
pub const BAND: (f64, f64) = (0.90, 0.95);
/// The largest growth per batch.
pub const MAX_GROWTH: f64 = 1.2;
/// The largest share of the target one batch can count for.
pub const MAX_SHARE: f64 = 1.5;

/// The size after a batch of `size` rows that took `ms`, given the moving
/// average so far (`None` before the first batch); returns the next size,
/// within `min..=max`, and the new average. A non-positive or non-finite
/// duration or target changes nothing.
pub fn next(
    size: i32,
    ms: f64,
    target_ms: f64,
    average: Option<f64>,
    min: i32,
    max: i32,
) -> (i32, Option<f64>) {
    let (min, max) = (min.max(1), max.max(min.max(1)));
    if !(ms.is_finite() && ms > 0.0 && target_ms.is_finite() && target_ms > 0.0) {
        return (size.clamp(min, max), average);
    }
    let share = (ms / target_ms).min(MAX_SHARE);
    let avg = match average {
        Some(a) if a.is_finite() && a > 0.0 => WEIGHT * share + (1.0 - WEIGHT) * a,
        _ => share,
    };
    let factor = if (BAND.0..=BAND.1).contains(&avg) {
        1.0
    } else {
        (BAND.1 / avg).min(MAX_GROWTH)
    };
    let next = (f64::from(size) * factor).round();
    let next = next.clamp(f64::from(min), f64::from(max)) as i32;
    (next, Some(avg))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table where a batch costs `per_row` ms a row plus `fixed` ms.
    fn run(per_row: f64, fixed: f64, start: i32, batches: usize, slow: &[usize]) -> Vec<i32> {
        let (mut size, mut avg) = (start, None);
        let mut sizes = vec![size];
        for b in 0..batches {
            let mut ms = fixed + per_row * f64::from(size);
            if slow.contains(&b) {
                ms *= 10.0;
            }
            (size, avg) = next(size, ms, 100.0, avg, 10, 1_000_000);
            sizes.push(size);
        }
        sizes
    }

    #[test]
    fn growth_is_at_most_a_fifth_per_batch() {
        let sizes = run(0.001, 1.0, 1000, 30, &[]);
        for w in sizes.windows(2) {
            assert!(
                f64::from(w[1]) <= f64::from(w[0]) * MAX_GROWTH + 1.0,
                "{sizes:?}"
            );
        }
        assert!(*sizes.last().unwrap() > 10_000, "{sizes:?}");
    }

    #[test]
    fn it_settles_in_the_band_and_stays() {
        // 0.01 ms a row and 5 ms a batch: 92.5 ms at 8750 rows.
        let sizes = run(0.01, 5.0, 1000, 60, &[]);
        let tail = &sizes[40..];
        for s in tail {
            let ms = 5.0 + 0.01 * f64::from(*s);
            assert!((80.0..=100.0).contains(&ms), "{ms} ms at {s}: {sizes:?}");
        }
        assert!(
            tail.windows(2).all(|w| w[0] == w[1]),
            "still moving: {tail:?}"
        );
    }

    #[test]
    fn one_slow_batch_costs_a_fifth_for_a_few_batches() {
        let sizes = run(0.01, 5.0, 1000, 60, &[45]);
        let before = f64::from(sizes[45]);
        let lowest = f64::from(*sizes[46..].iter().min().unwrap());
        assert!(lowest >= 0.75 * before, "{before} -> {lowest}: {sizes:?}");
        // ... and it comes back within a few batches.
        assert!(f64::from(sizes[51]) >= 0.9 * before, "{sizes:?}");
    }

    #[test]
    fn sustained_slowness_shrinks_it_fast() {
        // Every batch 10x the target: down by a third or more per batch.
        let (mut size, mut avg) = (100_000, None);
        for _ in 0..3 {
            let before = size;
            (size, avg) = next(size, 1000.0, 100.0, avg, 10, 1_000_000);
            assert!(
                f64::from(size) <= 0.65 * f64::from(before),
                "{before} -> {size}"
            );
        }
    }

    #[test]
    fn bounds_and_bad_input() {
        assert_eq!(next(50, 10_000.0, 100.0, None, 10, 100).0, 32);
        assert_eq!(next(12, 10_000.0, 100.0, Some(2.0), 10, 100).0, 10);
        assert_eq!(next(95, 1.0, 100.0, None, 10, 100).0, 100);
        assert_eq!(
            next(500, f64::NAN, 100.0, Some(0.5), 10, 100),
            (100, Some(0.5))
        );
        assert_eq!(next(50, 0.0, 100.0, None, 10, 100), (50, None));
        assert_eq!(next(50, 10.0, 0.0, None, 10, 100), (50, None));
        assert_eq!(next(50, 10.0, 100.0, None, 0, 0).0, 1);
    }
}
