//! Experiment calibration end to end: `encore experiments simulate` serves a simulated world
//! through a real server, logs exposures, draws reactions from the simulator's response model
//! and reads each experiment's report over HTTP.

// the test prints what it measured
#![allow(clippy::print_stderr)]

use crate::cli::{encore, stderr, stdout};

#[test]
fn aa_experiments_hold_their_level_and_ab_ships_the_better_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let o = encore(
        tmp.path(),
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "experiments",
            "simulate",
            "--users",
            "1000",
            "--aa",
            "200",
            "--ab",
            "50",
            "--json",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let (aa, ab) = (&r["aa"], &r["ab"]);
    eprintln!(
        "A/A false-positive rate {} (unadjusted {}), A/B ship rate {}, lifts {}",
        aa["false_positive_rate"],
        aa["false_positive_rate_unadjusted"],
        ab["ship_rate"],
        ab["mean_lift"]
    );
    assert_eq!(aa["experiments"], 200);
    // 20 at once over 1,000 listeners: about 50 each, disjoint, so the 200 p-values are
    // independent draws
    let exposed = aa["exposed_per_experiment"].as_f64().unwrap();
    assert!((35.0..=55.0).contains(&exposed), "{aa}");
    let fpr = aa["false_positive_rate"].as_f64().unwrap();
    assert!(
        (0.02..=0.09).contains(&fpr),
        "A/A false-positive rate {fpr}"
    );
    // the success metric's p-values under the null are uniform: a quarter in each quarter
    let ps: Vec<f64> = serde_json::from_value(aa["p_values"].clone()).unwrap();
    for q in 0..4 {
        let share = ps
            .iter()
            .filter(|&&p| p >= q as f64 / 4.0 && p < (q + 1) as f64 / 4.0)
            .count() as f64
            / ps.len() as f64;
        assert!((0.15..=0.35).contains(&share), "quarter {q}: {share}");
    }
    // a false "ship" needs a significant win in one direction: about alpha / 2
    let false_ships = aa["decisions"]["ship"].as_u64().unwrap_or(0);
    assert!(false_ships <= 12, "{aa}");
    assert_eq!(ab["experiments"], 50);
    let ship = ab["ship_rate"].as_f64().unwrap();
    assert!(ship >= 0.9, "the good model shipped in {ship} of 50: {ab}");
}
