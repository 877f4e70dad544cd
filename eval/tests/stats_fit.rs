//! Statistics, fits and plots against closed forms. Every expected number says where it came from.

use physlab_eval::fit::{power_law, proportional, scaling_law};
use physlab_eval::plot::{tick, Legend, Plot, Series, Style};
use physlab_eval::stats::{t_quantile, Alternative, SeedStats};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Student's t CDF with 2 degrees of freedom in closed form: F(t) = 1/2 + t / (2·√(2 + t²)).
fn t2_cdf(t: f64) -> f64 {
    0.5 + t / (2.0 * (2.0 + t * t).sqrt())
}

/// Student's t CDF with 4 degrees of freedom in closed form:
/// F(t) = 1/2 + (3/8)·u·(1 − u²/12·4/(4))… written with s = t²/4: 1/2 + (3/8)·(t/√(1+s))·(1 − s/(3(1+s))).
fn t4_cdf(t: f64) -> f64 {
    let s = t * t / 4.0;
    0.5 + 0.375 * t / (1.0 + s).sqrt() * (1.0 - s / (3.0 * (1.0 + s)))
}

#[test]
fn mean_and_sample_std() {
    // [1, 2, 3, 4]: mean 2.5, sample variance (2.25 + 0.25 + 0.25 + 2.25)/3 = 5/3.
    let s = SeedStats::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(s.n, 4);
    assert!(close(s.mean, 2.5, 1e-15));
    assert!(close(s.std, (5.0f64 / 3.0).sqrt(), 1e-15));
    assert_eq!((s.min, s.max), (1.0, 4.0));
    assert!(SeedStats::of(&[]).is_none());
    let one = SeedStats::of(&[7.0]).unwrap();
    assert_eq!(one.std, 0.0);
    assert!(
        one.t_test(1.0, Alternative::Less).is_none(),
        "no test from one seed"
    );
}

#[test]
fn one_sided_t_test_matches_the_closed_form() {
    // [0.9, 1.0, 1.1]: mean 1, std 0.1, n 3 (df 2). Against published P = 1 − 1.5·0.1/√3 the t statistic is 1.5.
    let s = SeedStats::of(&[0.9, 1.0, 1.1]).unwrap();
    let published = 1.0 - 1.5 * 0.1 / 3f64.sqrt();
    let less = s.t_test(published, Alternative::Less).unwrap();
    assert!(close(less.t, 1.5, 1e-12), "t = {}", less.t);
    assert_eq!(less.df, 2.0);
    assert!(close(less.p_value, t2_cdf(1.5), 1e-9), "{}", less.p_value);
    let greater = s.t_test(published, Alternative::Greater).unwrap();
    assert!(close(greater.p_value, 1.0 - t2_cdf(1.5), 1e-9));
    // Five values with t = −2 at df 4: P(T ≤ −2) = 0.0580583 (closed form above).
    let v = [1.0, 2.0, 3.0, 4.0, 5.0]; // mean 3, std √2.5
    let s = SeedStats::of(&v).unwrap();
    let published = 3.0 + 2.0 * s.sem();
    let p = s.t_test(published, Alternative::Less).unwrap().p_value;
    assert!(close(p, t4_cdf(-2.0), 1e-9), "{p} vs {}", t4_cdf(-2.0));
    assert!(close(p, 0.0580583, 1e-6));
}

#[test]
fn t_quantile_matches_the_closed_form() {
    // df = 2: the two-sided 95% factor is (2q − 1)/√(2q(1 − q)) at q = 0.975 = 4.302653 (also the t table).
    let q: f64 = 0.975;
    let expected = (2.0 * q - 1.0) / (2.0 * q * (1.0 - q)).sqrt();
    assert!(close(t_quantile(0.95, 2.0), expected, 1e-8));
    // df = 30: 2.042272456, by bisection on a Simpson integral of the t density in Python (the t table: 2.0423).
    assert!(close(t_quantile(0.95, 30.0), 2.042272456, 1e-6));
}

#[test]
fn proportional_fit() {
    // Exact data: slope 2, no error.
    let f = proportional(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap();
    assert!(close(f.slope.value, 2.0, 1e-15));
    assert!(close(f.slope.std_error, 0.0, 1e-12));
    // Noisy data; expected values from the closed form in Python:
    // k = Σxy/Σx² = 28.5/14 = 2.0357142857, se = √(SSE/(n−1)/Σx²) = 0.0387956446.
    let f = proportional(&[1.0, 2.0, 3.0], &[2.1, 3.9, 6.2]).unwrap();
    assert!(close(f.slope.value, 2.0357142857142856, 1e-12));
    assert!(close(f.slope.std_error, 0.03879564461142938, 1e-12));
    let h = t_quantile(0.95, 2.0) * f.slope.std_error;
    assert!(close(f.slope.ci95.0, f.slope.value - h, 1e-12));
    assert!(proportional(&[1.0], &[2.0]).is_none());
}

#[test]
fn power_law_recovers_its_exponent() {
    let x: Vec<f64> = (0..8).map(|i| 10f64.powf(3.0 + 0.5 * i as f64)).collect();
    let y: Vec<f64> = x.iter().map(|v| 3.0 * v.powf(-0.7)).collect();
    let f = power_law(&x, &y).unwrap();
    assert!(close(f.exponent.value, 0.7, 1e-12));
    assert!(close(f.log_coefficient.value, 3f64.ln(), 1e-10));
    assert!(f.exponent.std_error < 1e-10);
    assert!(close(f.r2, 1.0, 1e-12));
    // Non-positive values have no power law.
    assert!(power_law(&[1.0, 2.0, 3.0], &[1.0, 0.0, 2.0]).is_none());
}

#[test]
fn scaling_law_recovers_chinchillas_parameters() {
    // Noise-free points of Hoffmann et al.'s published fit (E 1.69, A 406.4, α 0.34, B 410.7, β 0.28) on a 4×4
    // grid of model and data sizes: the Huber fit must find it again.
    let truth = physlab_eval::fit::ScalingLaw {
        e: 1.69,
        a_coef: 406.4,
        a: 0.34,
        b_coef: 410.7,
        b: 0.28,
    };
    let mut n = Vec::new();
    let mut d = Vec::new();
    let mut l = Vec::new();
    for i in 0..4 {
        for j in 0..4 {
            let nn = 10f64.powf(6.0 + i as f64);
            let dd = 10f64.powf(8.0 + j as f64);
            n.push(nn);
            d.push(dd);
            l.push(truth.predict(nn, dd));
        }
    }
    let fit = scaling_law(&n, &d, &l, 0, 0).unwrap();
    let g = fit.law;
    let rel = |a: f64, b: f64| (a - b).abs() / b;
    // Exponents and E to 2%: the loss surface is flat along the coefficient directions.
    assert!(rel(g.a, 0.34) < 0.02, "{g:?}");
    assert!(rel(g.b, 0.28) < 0.02, "{g:?}");
    assert!(rel(g.e, 1.69) < 0.02, "{g:?}");
    for (nn, (dd, ll)) in n.iter().zip(d.iter().zip(&l)) {
        assert!(
            rel(g.predict(*nn, *dd), *ll) < 1e-3,
            "prediction off at N={nn}, D={dd}"
        );
    }
    // With a bootstrap the standard errors are finite.
    let fit = scaling_law(&n, &d, &l, 8, 1).unwrap();
    assert!(fit.std_error.a.is_finite() && fit.std_error.e.is_finite());
}

#[test]
fn svg_plot_holds_its_series_and_guides() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capacity.svg");
    let plot = Plot {
        title: "bits vs parameters".into(),
        x_label: "parameters".into(),
        y_label: "bits".into(),
        log_x: true,
        log_y: true,
        series: vec![Series {
            name: "gpt2 (mean ± std)".into(),
            points: vec![(2e5, 1.1e5), (3e5, 1.6e5), (4e5, 2.0e5)],
            error: Some(vec![1e4, 2e4, 1e4]),
            style: Style::Points,
            color: None,
        }],
        guides: vec![("2 bits/param".into(), 2.0), ("1 bit/param".into(), 1.0)],
        ..Default::default()
    };
    plot.write_svg(&path, 640, 480).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg"));
    for s in [
        "bits vs parameters",
        "gpt2 (mean ± std)",
        "2 bits/param",
        "1 bit/param",
    ] {
        assert!(svg.contains(s), "{s} missing");
    }
    assert!(svg.matches("<circle").count() >= 3);
}

/// Open circles (a bound beside the measured points) are drawn unfilled, points on a line filled, each with its
/// legend entry; the legend goes where it is asked to.
#[test]
fn hollow_and_joined_points_are_drawn_with_their_legend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("best.svg");
    let plot = Plot {
        title: "bits vs lr".into(),
        x_label: "lr".into(),
        y_label: "bits".into(),
        log_x: true,
        series: vec![
            Series {
                name: "N = 4,000".into(),
                points: vec![(1e-3, 2.2e5), (2e-3, 2.4e5), (4e-3, 2.5e5), (8e-3, 2.2e5)],
                error: None,
                style: Style::LinePoints,
                color: None,
            },
            Series {
                name: "perfect recall".into(),
                points: vec![(1e-3, 3.4e5)],
                error: None,
                style: Style::Hollow,
                color: None,
            },
        ],
        legend: Legend::LowerRight,
        legend_room: true,
        ..Default::default()
    };
    plot.write_svg(&path, 640, 480).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    for s in ["N = 4,000", "perfect recall"] {
        assert!(svg.contains(s), "{s} missing");
    }
    // Each circle element, up to its end.
    let circles: Vec<&str> = svg
        .split("<circle")
        .skip(1)
        .map(|c| c.split("/>").next().unwrap_or(c))
        .collect();
    // 4 joined points and their legend marker, 1 open circle and its legend marker.
    assert_eq!(circles.len(), 7, "{svg}");
    let open = circles
        .iter()
        .filter(|c| c.contains("fill=\"none\""))
        .count();
    assert_eq!(
        open, 2,
        "the open circle and its legend marker are unfilled"
    );
    // A log axis spanning 8× labels 1, 2 and 5 times a power of ten only: no "0.003".
    assert!(
        svg.contains("\n0.002\n") && !svg.contains("\n0.003\n"),
        "{svg}"
    );
}

#[test]
fn tick_labels_are_short() {
    assert_eq!(tick(0.6000000001), "0.6");
    assert_eq!(tick(50.0), "50");
    assert_eq!(tick(0.125), "0.125");
    assert_eq!(tick(700000.0), "7.0e5");
    assert_eq!(tick(0.0), "0");
}
