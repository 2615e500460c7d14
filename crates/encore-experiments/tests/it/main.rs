//! Assignment properties on many synthetic listeners.

use encore_experiments::assignment::{
    AssignmentError, Context, ExperimentSpec, Plan, Targeting, Variant,
};
use std::collections::HashMap;

fn spec(id: &str, domain: &str, traffic: f64, weights: &[f64]) -> ExperimentSpec {
    ExperimentSpec {
        id: id.into(),
        domain: domain.into(),
        traffic,
        variants: weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Variant {
                name: format!("v{i}"),
                weight: w,
            })
            .collect(),
        targeting: Targeting::default(),
    }
}

fn ctx() -> Context<'static> {
    Context {
        country: "SE",
        platform: "ios",
        tier: "premium",
        new_user: false,
    }
}

fn users(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("user-{i}"))
}

#[test]
fn deterministic_and_sticky() {
    let experiments = [
        spec("e1", "home", 0.6, &[1.0, 1.0]),
        spec("e2", "search", 1.0, &[3.0, 1.0]),
    ];
    let a = Plan::new(&experiments, &HashMap::new(), 0.05, "holdout").unwrap();
    let b = Plan::new(&experiments, &HashMap::new(), 0.05, "holdout").unwrap();
    for u in users(20_000) {
        let first = a.assign(&u, &ctx());
        assert_eq!(first, a.assign(&u, &ctx()));
        assert_eq!(first, b.assign(&u, &ctx()));
    }
}

#[test]
fn weights_are_honoured_on_a_million_listeners() {
    let plan = Plan::new(
        &[spec("e", "home", 1.0, &[1.0, 1.0, 2.0])],
        &HashMap::new(),
        0.0,
        "h",
    )
    .unwrap();
    let mut counts = [0f64; 3];
    for u in users(1_000_000) {
        let a = plan.assign(&u, &ctx());
        assert_eq!(a.len(), 1);
        counts[a[0].variant[1..].parse::<usize>().unwrap()] += 1.0;
    }
    let (chi2, _, p, _) = encore_stats::srm(&counts, &[1.0, 1.0, 2.0]);
    assert!(p > 0.001, "counts {counts:?}: chi2 {chi2}, p {p}");
}

#[test]
fn domains_are_independent_and_experiments_in_one_domain_exclusive() {
    let experiments = [
        spec("home-a", "home", 0.4, &[1.0, 1.0]),
        spec("home-b", "home", 0.5, &[1.0, 1.0]),
        spec("radio", "radio", 1.0, &[1.0, 1.0]),
    ];
    let plan = Plan::new(&experiments, &HashMap::new(), 0.0, "h").unwrap();
    let n = 300_000;
    let (mut in_a, mut in_b) = (0usize, 0usize);
    // rows: home-a variant (v0, v1, not in home-a); columns: radio variant
    let mut table = [[0f64; 2]; 3];
    for u in users(n) {
        let got = plan.assign(&u, &ctx());
        let home: Vec<_> = got
            .iter()
            .filter(|a| a.experiment.starts_with("home"))
            .collect();
        assert!(
            home.len() <= 1,
            "{u} is in two experiments of one domain: {got:?}"
        );
        in_a += usize::from(home.first().is_some_and(|a| a.experiment == "home-a"));
        in_b += usize::from(home.first().is_some_and(|a| a.experiment == "home-b"));
        let row = match home.first() {
            Some(a) if a.experiment == "home-a" => usize::from(a.variant == "v1"),
            _ => 2,
        };
        let radio = got.iter().find(|a| a.experiment == "radio").unwrap();
        table[row][usize::from(radio.variant == "v1")] += 1.0;
    }
    let share = |k: usize| k as f64 / n as f64;
    assert!((share(in_a) - 0.4).abs() < 0.005 && (share(in_b) - 0.5).abs() < 0.005);
    // independence: the radio split is the same whatever the home assignment
    let radio_v0: Vec<f64> = table.iter().map(|r| r[0]).collect();
    let radio_v1: Vec<f64> = table.iter().map(|r| r[1]).collect();
    let d = encore_stats::categorical_drift(&radio_v0, &radio_v1);
    assert!(
        d.chi2_contingency.2 > 0.001,
        "{table:?}: {:?}",
        d.chi2_contingency
    );
}

#[test]
fn the_holdout_is_never_enrolled_and_a_new_salt_reshuffles() {
    let experiments = [spec("e", "home", 1.0, &[1.0, 1.0])];
    let plan = Plan::new(&experiments, &HashMap::new(), 0.1, "global-holdout").unwrap();
    let salted = HashMap::from([("home".to_string(), "home-2026".to_string())]);
    let reshuffled = Plan::new(&experiments, &salted, 0.1, "global-holdout").unwrap();
    let n = 100_000;
    let (mut held, mut moved, mut enrolled) = (0usize, 0usize, 0usize);
    for u in users(n) {
        let a = plan.assign(&u, &ctx());
        if plan.held_out(&u) {
            held += 1;
            assert!(a.is_empty(), "held-out {u} was enrolled");
            continue;
        }
        enrolled += 1;
        let b = reshuffled.assign(&u, &ctx());
        moved += usize::from(a[0].variant != b[0].variant);
    }
    assert!((held as f64 / n as f64 - 0.1).abs() < 0.005, "{held}");
    let moved_share = moved as f64 / enrolled as f64;
    assert!(
        (moved_share - 0.5).abs() < 0.01,
        "a new salt moved {moved_share}"
    );
}

#[test]
fn targeting_and_configuration_errors() {
    let mut se_only = spec("e", "home", 1.0, &[1.0, 1.0]);
    se_only.targeting.countries = vec!["SE".into()];
    let plan = Plan::new(&[se_only], &HashMap::new(), 0.0, "h").unwrap();
    let br = Context {
        country: "BR",
        ..ctx()
    };
    assert_eq!(plan.assign("u1", &ctx()).len(), 1);
    assert!(plan.assign("u1", &br).is_empty());

    let full = Plan::new(
        &[
            spec("a", "home", 0.7, &[1.0, 1.0]),
            spec("b", "home", 0.4, &[1.0, 1.0]),
        ],
        &HashMap::new(),
        0.0,
        "h",
    );
    assert!(matches!(full, Err(AssignmentError::DomainFull { .. })));
    let one_variant = Plan::new(&[spec("a", "home", 0.5, &[1.0])], &HashMap::new(), 0.0, "h");
    assert!(matches!(one_variant, Err(AssignmentError::Invalid { .. })));
}
