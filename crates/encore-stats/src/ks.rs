//! The Kolmogorov-Smirnov distributions behind numeric drift checks, following the decision
//! tree of Simard and L'Ecuyer (2011) that scipy uses, so p-values agree with it:
//!
//! - the one-sample two-sided statistic D_n: the Durbin matrix (Marsaglia, Tsang and Wang
//!   2003) where it is exact and cheap, the Pelz-Good (1976) expansion for large n and small
//!   deviations, and twice the one-sided Smirnov tail (Birnbaum and Tingey 1951) far in the
//!   tail;
//! - the limiting Kolmogorov distribution;
//! - the exact two-sample null distribution by counting lattice paths that stay inside the band.

use std::f64::consts::PI;

/// P(D_n > x) for the two-sided one-sample statistic.
pub fn kolmogorov_sf(n: usize, x: f64) -> f64 {
    let nf = n as f64;
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let t = nf * x;
    if t <= 1.0 {
        if t <= 0.5 {
            return 1.0;
        }
        // Ruben-Gambino: P(D_n <= x) = n!/n^n (2t − 1)^n
        let log_cdf = ln_factorial(n) - nf * nf.ln() + nf * (2.0 * t - 1.0).ln();
        return (1.0 - log_cdf.exp()).clamp(0.0, 1.0);
    }
    if t >= nf - 1.0 {
        return (2.0 * (1.0 - x).powf(nf)).clamp(0.0, 1.0);
    }
    if x >= 0.5 {
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    let nx2 = t * x;
    if n <= 140 {
        if nx2 <= 0.754_693 || nx2 <= 4.0 {
            // Pomeranz's recursion is used by the reference here; the Durbin matrix is exact too
            return (1.0 - durbin_cdf(n, x)).clamp(0.0, 1.0);
        }
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    if nx2 >= 370.0 {
        return 0.0;
    }
    if nx2 >= 2.2 {
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    let cdf = if nx2 >= 18.0 {
        1.0
    } else if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        durbin_cdf(n, x)
    } else {
        pelz_good_cdf(n, x)
    };
    (1.0 - cdf).clamp(0.0, 1.0)
}

fn ln_factorial(n: usize) -> f64 {
    statrs::function::gamma::ln_gamma(n as f64 + 1.0)
}

/// P(D_n <= d) by the Durbin matrix: with d = (k − h)/n, the k-th diagonal entry of
/// (n!/n^n) H^n for a (2k − 1)-square matrix H, powered by squaring with the scale kept apart
/// as a power of two.
pub fn durbin_cdf(n: usize, d: f64) -> f64 {
    let nd = n as f64 * d;
    if d >= 1.0 {
        return 1.0;
    }
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;
    let mut hm = vec![0.0f64; m * m];
    // v[j] = (1 − h^(j+1)) / (j+1)!, w[j] = 1 / j!
    let mut v = vec![0.0; m];
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] = (1.0 - h.powi(j as i32)) * fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powi(m as i32) - 2.0 * h.powi(m as i32);
    v[m - 1] = (1.0 + tt) * fac;
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r - (i - 1)];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
    }
    for c in 0..m {
        hm[(m - 1) * m + c] = v[m - 1 - c];
    }
    let matmul = |a: &[f64], b: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; m * m];
        for i in 0..m {
            for l in 0..m {
                let x = a[i * m + l];
                if x == 0.0 {
                    continue;
                }
                for j in 0..m {
                    out[i * m + j] += x * b[l * m + j];
                }
            }
        }
        out
    };
    let mut power: Vec<f64> = (0..m * m)
        .map(|i| if i % (m + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    let (mut exp, mut h_exp) = (0i32, 0i32);
    let mut nn = n;
    let big = 2f64.powi(128);
    while nn > 0 {
        if nn % 2 == 1 {
            power = matmul(&power, &hm);
            exp += h_exp;
        }
        hm = matmul(&hm, &hm);
        h_exp *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > big {
            hm.iter_mut().for_each(|x| *x /= big);
            h_exp += 128;
        }
        nn /= 2;
    }
    let mut p = power[(k - 1) * m + (k - 1)];
    let small = 2f64.powi(-128);
    for i in 1..=n {
        p = i as f64 * p / n as f64;
        if p.abs() < small {
            p *= big;
            exp -= 128;
        }
    }
    (p * 2f64.powi(exp)).clamp(0.0, 1.0)
}

/// P(D_n <= x) by the Pelz-Good expansion in 1/√n of the Kolmogorov limit, with the theta-
/// function forms of its terms that converge fast for small z = x√n.
pub fn pelz_good_cdf(n: usize, x: f64) -> f64 {
    let z = (n as f64).sqrt() * x;
    let (z2, z3, z4, z6) = (z * z, z * z * z, z.powi(4), z.powi(6));
    let qlog = -PI * PI / 8.0 / z2;
    if qlog < -708.0 {
        return 0.0;
    }
    let q = qlog.exp();
    let (pi2, pi4, pi6) = (PI * PI, PI.powi(4), PI.powi(6));
    let (k1a, k1b) = (-z2, pi2 / 4.0);
    let (k2a, k2b, k2c) = (
        6.0 * z6 + 2.0 * z4,
        (2.0 * z4 - 5.0 * z2) * pi2 / 4.0,
        pi4 * (1.0 - 2.0 * z2) / 16.0,
    );
    let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);
    let maxk = (16.0 * z / PI).ceil() as i64;
    // sums over odd m = 2k − 1 of c(m) q^(m²), by Horner in q^(8k)
    let mut s = [0.0f64; 4];
    for k in (1..=maxk).rev() {
        let m = (2 * k - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let qp = q.powf(8.0 * k as f64);
        let c = [
            1.0,
            k1a + k1b * m2,
            k2a + k2b * m2 + k2c * m4,
            k3a + k3b * m2 + k3c * m4 + k3d * m6,
        ];
        for (s, c) in s.iter_mut().zip(c) {
            *s = *s * qp + c;
        }
    }
    let root = (2.0 * PI).sqrt();
    let denom = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (s, d) in s.iter_mut().zip(denom) {
        *s *= q * root / d;
    }
    // the terms over all integers k
    let q2 = (-pi2 / 2.0 / z2).exp();
    let (mut k2extra, mut k3extra) = (0.0, 0.0);
    let sqrt3z = 3f64.sqrt() * z;
    for k in (1..=maxk).rev() {
        let kf = k as f64;
        let qp = q2.powf(kf * kf);
        k2extra += kf * kf * qp;
        k3extra += (sqrt3z + PI * kf) * (sqrt3z - PI * kf) * kf * kf * qp;
    }
    s[2] += k2extra * pi2 * root / (-36.0 * z3);
    s[3] += k3extra * pi2 * root / (216.0 * z6);
    let nf = n as f64;
    s[0] + s[1] / nf.sqrt() + s[2] / nf + s[3] / nf.powf(1.5)
}

/// P(D+_n >= x), the one-sided Smirnov tail, by Birnbaum and Tingey's finite sum (in logs).
pub fn smirnov_sf(n: usize, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x >= 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    let jmax = (nf * (1.0 - x)).floor() as usize;
    let lnf = ln_factorial(n);
    let mut sum = 0.0;
    for j in 0..=jmax {
        let jf = j as f64;
        let a = 1.0 - x - jf / nf;
        let b = x + jf / nf;
        if a <= 0.0 {
            continue;
        }
        let ln_term =
            lnf - ln_factorial(j) - ln_factorial(n - j) + (nf - jf) * a.ln() + (jf - 1.0) * b.ln();
        sum += ln_term.exp();
    }
    (x * sum).clamp(0.0, 1.0)
}

/// P(K > x) for the limiting Kolmogorov distribution.
pub fn kolmogorov_limit_sf(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.0 {
        // the theta-function form converges fast for small x
        let mut cdf = 0.0;
        for k in 1..=50 {
            let m = (2 * k - 1) as f64;
            cdf += (-m * m * PI * PI / (8.0 * x * x)).exp();
        }
        return 1.0 - (2.0 * PI).sqrt() / x * cdf;
    }
    let mut sf = 0.0;
    for k in 1..=100 {
        let kf = k as f64;
        let term = (-2.0 * kf * kf * x * x).exp();
        sf += if k % 2 == 1 { term } else { -term };
        if term < 1e-300 {
            break;
        }
    }
    (2.0 * sf).clamp(0.0, 1.0)
}

/// P(D_{n1,n2} >= d) under the null, two-sided, exactly: the share of the C(n1+n2, n1)
/// equally likely merge orders whose path leaves the band |i/n1 − j/n2| < d, with d rounded to
/// the lattice (h / lcm) as the reference does.
pub fn two_sample_exact_sf(n1: usize, n2: usize, d: f64) -> f64 {
    let g = gcd(n1, n2);
    let lcm = (n1 / g) as f64 * n2 as f64;
    let h = (d * lcm).round() as i64;
    if h == 0 {
        return 1.0;
    }
    let (a, b) = ((n2 / g) as i64, (n1 / g) as i64);
    let inside = |i: usize, j: usize| (i as i64 * a - j as i64 * b).abs() < h;
    // f[j]: probability that a random merge order passes through (i, j) staying inside so far
    let mut f = vec![0.0f64; n2 + 1];
    f[0] = 1.0;
    for j in 1..=n2 {
        let rem = (n1 + n2 - (j - 1)) as f64;
        f[j] = if inside(0, j) {
            f[j - 1] * (n2 - (j - 1)) as f64 / rem
        } else {
            0.0
        };
    }
    for i in 1..=n1 {
        let mut next = vec![0.0f64; n2 + 1];
        for j in 0..=n2 {
            if !inside(i, j) {
                continue;
            }
            // from (i − 1, j) by a step in sample 1, from (i, j − 1) by one in sample 2
            let mut p = f[j] * (n1 - (i - 1)) as f64 / (n1 + n2 - (i - 1) - j) as f64;
            if j > 0 {
                p += next[j - 1] * (n2 - (j - 1)) as f64 / (n1 + n2 - i - (j - 1)) as f64;
            }
            next[j] = p;
        }
        f = next;
    }
    (1.0 - f[n2]).clamp(0.0, 1.0)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
