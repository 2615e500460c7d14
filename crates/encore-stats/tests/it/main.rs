//! The statistics against the public reference vectors of `../shared/oracles` (skipped when
//! that directory is absent).

// tests print what they measured
#![allow(clippy::print_stderr)]

fn vectors() -> Option<serde_json::Value> {
    let path = encore_core::shared::path(env!("CARGO_MANIFEST_DIR"), "oracles/stats-vectors.json")?;
    let text = std::fs::read_to_string(&path).unwrap();
    Some(serde_json::from_str(&text).unwrap())
}

#[test]
fn all_public_vectors_pass_within_tolerance() {
    let Some(file) = vectors() else { return };
    let v = encore_stats::oracle::verify(&file);
    for (id, failures) in &v.failures {
        eprintln!("{id}:\n  {}", failures.join("\n  "));
    }
    eprintln!(
        "{} vectors pass, {} fail, {} not supported yet: {:?}",
        v.results.len() - v.failures.len(),
        v.failures.len(),
        v.unsupported.len(),
        v.unsupported
    );
    assert!(v.failures.is_empty(), "{} vectors fail", v.failures.len());
    assert!(v.unsupported.is_empty(), "unsupported: {:?}", v.unsupported);
    assert_eq!(v.results.len(), 61, "the public set has 61 vectors");
}

/// A small deterministic generator for the simulations below (splitmix64, Box-Muller).
struct Gen(u64);

impl Gen {
    fn u(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        (-2.0 * (1.0 - self.u()).ln()).sqrt() * (std::f64::consts::TAU * self.u()).cos()
    }

    /// one listener: an activity level shared by both periods, plays and streams in each
    fn listener(&mut self, stream_p: f64) -> [f64; 4] {
        let activity = (1.0 + 0.8 * self.normal()).exp();
        let taste = (stream_p + 0.15 * self.normal()).clamp(0.05, 0.95);
        let mut period = |p: f64| {
            let plays = (activity * (0.5 + self.u())).round();
            let streams = (0..plays as usize).filter(|_| self.u() < p).count() as f64;
            (streams, plays)
        };
        let (s0, p0) = period(taste);
        let (s, p) = period((taste + stream_p - 0.6).clamp(0.0, 1.0));
        [s, p, s0, p0]
    }
}

#[test]
fn ratio_comparison_is_the_delta_method_and_cuped_reduces_its_variance() {
    use encore_stats::{Alternative, CoMoments, RatioMoments, ratio_arm, ratio_comparison};
    let mut g = Gen(7);
    let (mut a, mut b) = (RatioMoments::default(), RatioMoments::default());
    let (mut ca, mut cb) = (CoMoments::default(), CoMoments::default());
    let mut halves = [RatioMoments::default(), RatioMoments::default()];
    for i in 0..4_000 {
        let (va, vb) = (g.listener(0.6), g.listener(0.62));
        a.push(va);
        b.push(vb);
        ca.push(va[1], va[0]);
        cb.push(vb[1], vb[0]);
        halves[i % 2].push(va);
    }
    // merging is exact
    let merged = halves[0].merge(&halves[1]);
    assert!((merged.mean[0] - a.mean[0]).abs() < 1e-12);
    assert!((merged.c[0][1] - a.c[0][1]).abs() < 1e-6 * a.c[0][1].abs());
    let r = ratio_comparison(&a, &b, 0.05, Alternative::TwoSided);
    let ((ra, unit_a), (rb, unit_b)) = (ratio_arm(&ca), ratio_arm(&cb));
    assert!((r.ratio_a - ra).abs() < 1e-12 && (r.ratio_b - rb).abs() < 1e-12);
    let se = (unit_a / a.n + unit_b / b.n).sqrt();
    assert!((r.abs.se - se).abs() < 1e-9 * se, "{} vs {se}", r.abs.se);
    assert!((r.abs.estimate - (rb - ra)).abs() < 1e-12);
    // the pre period predicts the post period: CUPED narrows the interval
    assert!(r.theta > 0.0, "theta {}", r.theta);
    assert!(r.variance_reduction > 0.1, "{}", r.variance_reduction);
    assert!(r.abs_adjusted.se < r.abs.se);
    eprintln!(
        "ratio {:.4} vs {:.4}: p {:.2e} unadjusted, {:.2e} with CUPED (variance -{:.0} %)",
        ra,
        rb,
        r.abs.p_value,
        r.abs_adjusted.p_value,
        100.0 * r.variance_reduction
    );
    // nobody listened before: no covariate, the adjusted result is the unadjusted one
    let strip = |m: &RatioMoments| {
        let mut s = *m;
        s.mean[2] = 0.0;
        s.mean[3] = 0.0;
        for i in 0..4 {
            for j in 0..4 {
                if i >= 2 || j >= 2 {
                    s.c[i][j] = 0.0;
                }
            }
        }
        s
    };
    let none = ratio_comparison(&strip(&a), &strip(&b), 0.05, Alternative::TwoSided);
    assert_eq!(none.theta, 0.0);
    assert_eq!(none.abs_adjusted.p_value, none.abs.p_value);
}

#[test]
fn ratio_comparison_holds_its_level_under_the_null() {
    use encore_stats::{Alternative, RatioMoments, ratio_comparison};
    let mut g = Gen(11);
    let (runs, mut plain, mut adjusted) = (400, 0, 0);
    for _ in 0..runs {
        let (mut a, mut b) = (RatioMoments::default(), RatioMoments::default());
        for _ in 0..500 {
            a.push(g.listener(0.6));
            b.push(g.listener(0.6));
        }
        let r = ratio_comparison(&a, &b, 0.05, Alternative::TwoSided);
        plain += usize::from(r.abs.p_value < 0.05);
        adjusted += usize::from(r.abs_adjusted.p_value < 0.05);
    }
    let (fp, fa) = (plain as f64 / runs as f64, adjusted as f64 / runs as f64);
    eprintln!("ratio metric A/A false-positive rate: {fp:.3} unadjusted, {fa:.3} CUPED");
    assert!((0.02..=0.09).contains(&fp), "{fp}");
    assert!((0.02..=0.09).contains(&fa), "{fa}");
}
