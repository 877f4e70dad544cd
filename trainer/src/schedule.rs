//! The learning rate as a pure function of the step: linear warm-up, then cosine decay to `min_ratio`·peak
//! (Part 3.3: warm-up, cosine decay to 0.1×).

pub fn lr_at(step: usize, total_steps: usize, peak: f64, warmup: usize, min_ratio: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total_steps.saturating_sub(warmup).max(1);
    let progress = ((step - warmup.min(step)) as f64 / decay_steps as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * (min_ratio + (1.0 - min_ratio) * cosine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_min_ratio() {
        let (total, peak, warm) = (1000, 1e-3, 100);
        assert!((lr_at(0, total, peak, warm, 0.1) - 1e-5).abs() < 1e-12);
        assert!((lr_at(99, total, peak, warm, 0.1) - 1e-3).abs() < 1e-12);
        assert!((lr_at(100, total, peak, warm, 0.1) - 1e-3).abs() < 1e-12);
        // Halfway through the decay the cosine is at its midpoint: 0.1 + 0.9·0.5 = 0.55 of the peak.
        assert!((lr_at(550, total, peak, warm, 0.1) - 0.55e-3).abs() < 1e-9);
        assert!((lr_at(1000, total, peak, warm, 0.1) - 1e-4).abs() < 1e-12);
        let mut prev = f64::MAX;
        for s in 100..1000 {
            let lr = lr_at(s, total, peak, warm, 0.1);
            assert!(lr <= prev + 1e-15);
            prev = lr;
        }
    }
}
