//! The early-stopping rule of the Zipf data sweep: the step is chosen on validation, the figure read on test.

use physlab_eval::corpus::early_stopping;

/// A curve that over-fits: validation falls, then rises. The step with the lowest *validation* excess is chosen
/// (400), and the test excess reported is the one at that step, not the lowest test value (which is at 600 here:
/// choosing on test would report 0.20).
#[test]
fn the_step_is_chosen_on_validation_and_the_figure_read_on_test() {
    let curve = [
        (0, 5.0, 5.1),
        (200, 1.0, 1.1),
        (400, 0.30, 0.35),
        (600, 0.31, 0.20),
        (800, 0.60, 0.70),
    ];
    let e = early_stopping(&curve).unwrap();
    assert_eq!(e.best_step, 400);
    assert_eq!(e.evaluations, 5);
    assert_eq!(e.last_step, 800);
    assert_eq!(e.validation_excess_bits_per_token, 0.30);
    assert_eq!(e.excess_bits_per_token, 0.35);
    assert_eq!(e.last_excess_bits_per_token, 0.70);
    assert!(!e.best_is_last);
}

/// Ties go to the earlier step; a step written twice (a resumed run) keeps its last line; a curve still falling
/// at its end says so; an empty or non-finite curve gives nothing.
#[test]
fn ties_rewrites_and_a_curve_still_falling() {
    let e = early_stopping(&[(0, 2.0, 2.0), (10, 1.0, 1.5), (20, 1.0, 0.5)]).unwrap();
    assert_eq!((e.best_step, e.excess_bits_per_token), (10, 1.5));
    // Step 10 written again after a resume, with other values: the later line counts.
    let e = early_stopping(&[
        (0, 2.0, 2.0),
        (10, 9.0, 9.0),
        (20, 1.0, 0.9),
        (10, 0.5, 0.6),
    ])
    .unwrap();
    assert_eq!((e.best_step, e.excess_bits_per_token), (10, 0.6));
    assert_eq!(e.evaluations, 3);
    let e = early_stopping(&[(0, 2.0, 2.1), (10, 1.0, 1.1)]).unwrap();
    assert!(e.best_is_last);
    assert_eq!(e.excess_bits_per_token, e.last_excess_bits_per_token);
    assert!(early_stopping(&[]).is_none());
    assert!(early_stopping(&[(0, f64::NAN, 1.0), (10, 1.0, 1.0)]).is_none());
}
