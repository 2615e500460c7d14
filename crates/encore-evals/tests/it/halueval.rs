//! A reference judge on HaluEval's human hallucination labels (`../shared`, skipped when absent):
//! its calibration report, checked against an independent computation here.

use encore_evals::calibration::calibration;
use encore_evals::heuristic::Grounding;
use encore_evals::{Evaluator, Sample};

fn halueval() -> Option<Vec<serde_json::Value>> {
    let path = encore_core::shared::path(
        env!("CARGO_MANIFEST_DIR"),
        "datasets/halueval-general/general_data.json",
    )?;
    // JSON Lines despite the extension
    let text = std::fs::read_to_string(&path).unwrap();
    Some(
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    )
}

#[test]
fn reference_judge_calibration_on_halueval_matches_an_independent_computation() {
    let Some(records) = halueval() else { return };
    assert_eq!(records.len(), 4_507);
    // the reference judge: how much of the answer is not grounded in the question
    let judge = Grounding { threshold: 0.5 };
    let pairs: Vec<(f64, bool)> = records
        .iter()
        .map(|r| {
            let s = Sample {
                input: r["user_query"].as_str().unwrap(),
                output: r["chatgpt_response"].as_str().unwrap(),
                context: r["user_query"].as_str(),
                expected: None,
            };
            let grounded = judge.evaluate(&s).unwrap().value;
            (1.0 - grounded, r["hallucination"] == "yes")
        })
        .collect();
    let report = calibration(&pairs, 0.5, 10);
    assert_eq!(report.items, 4_507);
    assert_eq!(report.positives, 815);

    // independently: confusion counts, kappa from the 2x2 table's marginals, Brier, and ECE from
    // sorting items into bins by floor(10 p)
    let n = pairs.len() as f64;
    let mut table = [[0f64; 2]; 2];
    for &(p, y) in &pairs {
        table[usize::from(p >= 0.5)][usize::from(y)] += 1.0;
    }
    let po = (table[0][0] + table[1][1]) / n;
    let row = [table[0][0] + table[0][1], table[1][0] + table[1][1]];
    let colm = [table[0][0] + table[1][0], table[0][1] + table[1][1]];
    let pe = (row[0] * colm[0] + row[1] * colm[1]) / (n * n);
    let kappa = (po - pe) / (1.0 - pe);
    let brier = pairs
        .iter()
        .map(|&(p, y)| (p - if y { 1.0 } else { 0.0 }).powi(2))
        .sum::<f64>()
        / n;
    let mut ece = 0.0;
    for b in 0..10 {
        let inside: Vec<&(f64, bool)> = pairs
            .iter()
            .filter(|(p, _)| (((p * 10.0).floor() as usize).min(9)) == b)
            .collect();
        if inside.is_empty() {
            continue;
        }
        let k = inside.len() as f64;
        let mean_p = inside.iter().map(|(p, _)| p).sum::<f64>() / k;
        let rate = inside.iter().filter(|(_, y)| *y).count() as f64 / k;
        ece += k / n * (mean_p - rate).abs();
        assert_eq!(report.reliability[b].count, inside.len());
    }
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert!(close(report.agreement, po), "{} vs {po}", report.agreement);
    assert!(close(report.kappa, kappa), "{} vs {kappa}", report.kappa);
    assert!(close(report.brier, brier), "{} vs {brier}", report.brier);
    assert!(close(report.ece, ece), "{} vs {ece}", report.ece);
    assert!(close(report.recall, table[1][1] / colm[1]));
    assert!(close(report.precision, table[1][1] / row[1]));
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "reference judge on HaluEval: agreement {:.3}, kappa {:.3}, precision {:.3}, recall {:.3}, Brier {:.3}, ECE {:.3}",
            report.agreement,
            report.kappa,
            report.precision,
            report.recall,
            report.brier,
            report.ece
        );
    }
}

#[test]
fn calibration_by_hand() {
    // four items: p = 0.9 (yes), 0.8 (no), 0.2 (yes), 0.1 (no), threshold 0.5, 2 bins
    let r = calibration(
        &[(0.9, true), (0.8, false), (0.2, true), (0.1, false)],
        0.5,
        2,
    );
    assert_eq!((r.agreement, r.precision, r.recall), (0.5, 0.5, 0.5));
    // marginals 1/2 and 1/2: chance agreement 1/2, kappa 0
    assert_eq!(r.kappa, 0.0);
    // Brier: (0.01 + 0.64 + 0.64 + 0.01) / 4
    assert!((r.brier - 0.325).abs() < 1e-12);
    // bins: [0, .5): mean .15, rate .5; [.5, 1]: mean .85, rate .5 -> ECE = .5*.35 + .5*.35
    assert!((r.ece - 0.35).abs() < 1e-12);
    assert_eq!(r.reliability[1].count, 2);
}
