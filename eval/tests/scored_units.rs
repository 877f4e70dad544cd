//! Scored positions and units: a facts value of M tokens is one unit whose NLL is the sum of its tokens', also
//! when the unit falls across two evaluation windows.

use physlab_eval::corpus::{documents_nll_bits_scored, Positions};
use physlab_trainer::train::init_model;
use physlab_trainer::{Cpu, ModelConfig};

/// On a random model (V = 20, context 8, so a 23-token document spans several windows): scoring with period 5,
/// offset 2, span 3 gives, per period, the sum of the three per-token NLLs at positions 2, 3, 4 that Positions::ALL
/// scores (within f64 summation); a unit the document ends inside (positions 20–22 of 23, its last missing) is not
/// counted; span 1 is the single position, as before spans existed.
#[test]
fn a_span_is_scored_as_the_sum_of_its_positions() {
    let shape = ModelConfig {
        preset: "gpt2-1-1".into(),
        d_model: 16,
        ..ModelConfig::default()
    }
    .shape(20, 8)
    .unwrap();
    let device = Default::default();
    let model = init_model::<Cpu>(&shape, 0, &device).unwrap();
    let docs: Vec<Vec<u32>> = vec![
        (0..23).map(|i| (i * 7 + 3) % 19 + 1).collect(),
        (0..10).map(|i| (i * 5 + 1) % 19 + 1).collect(),
    ];
    let all = documents_nll_bits_scored(&model, &docs, Positions::ALL, 8, 3, &device);
    assert_eq!(all[0].len(), 23);
    let spans = Positions {
        period: 5,
        offset: 2,
        span: 3,
    };
    let units = documents_nll_bits_scored(&model, &docs, spans, 8, 3, &device);
    for (d, doc) in docs.iter().enumerate() {
        let expected: Vec<f64> = (0..doc.len() / 5 + 1)
            .filter(|p| 5 * p + 4 < doc.len())
            .map(|p| all[d][5 * p + 2] + all[d][5 * p + 3] + all[d][5 * p + 4])
            .collect();
        assert_eq!(units[d].len(), expected.len(), "document {d}");
        for (a, b) in units[d].iter().zip(&expected) {
            assert!((a - b).abs() < 1e-9, "document {d}: {a} vs {b}");
        }
    }
    assert_eq!(
        units[0].len(),
        4,
        "periods 0–3; the fifth's last position is past the end"
    );
    let one = Positions {
        period: 5,
        offset: 2,
        span: 1,
    };
    let singles = documents_nll_bits_scored(&model, &docs, one, 8, 3, &device);
    let expected: Vec<f64> = (0..5).map(|p| all[0][5 * p + 2]).collect();
    assert_eq!(singles[0], expected);
}
