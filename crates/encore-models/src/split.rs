//! The shared holdout split rule (`../shared/bench/recsys`): every implementation computes the
//! same split, so numbers are comparable across libraries.
//!
//! For each user with n >= 5 distinct items, order the items by
//! `h = splitmix64(((user << 32) | item) ^ splitmix64(seed))` (ties by item id) and put the first
//! `(2n + 5) / 10` in test.

/// The standard SplitMix64 finalizer applied to `x + golden`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The ordering hash of (user, item) under `seed`.
pub fn split_hash(user: u64, item: u64, seed: u64) -> u64 {
    splitmix64(((user << 32) | item) ^ splitmix64(seed))
}

/// One interaction of the split's input: original numeric ids and weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Triple {
    pub user: u64,
    pub item: u64,
    pub weight: f64,
}

/// Splits `rows` (one row per distinct user-item pair) into (train, test), each sorted by user
/// then item, exactly as the shared rule says.
pub fn holdout(rows: &[Triple], seed: u64, min_items: usize) -> (Vec<Triple>, Vec<Triple>) {
    let mut sorted = rows.to_vec();
    sorted.sort_by_key(|r| (r.user, r.item));
    let (mut train, mut test) = (Vec::new(), Vec::new());
    let mut start = 0;
    while start < sorted.len() {
        let user = sorted[start].user;
        let end = start + sorted[start..].partition_point(|r| r.user == user);
        let group = &sorted[start..end];
        let n = group.len();
        if n < min_items {
            train.extend_from_slice(group);
        } else {
            let n_test = (2 * n + 5) / 10;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&k| (split_hash(user, group[k].item, seed), group[k].item));
            let mut is_test = vec![false; n];
            for &k in &order[..n_test] {
                is_test[k] = true;
            }
            for (k, r) in group.iter().enumerate() {
                if is_test[k] {
                    test.push(*r)
                } else {
                    train.push(*r)
                }
            }
        }
        start = end;
    }
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_test_values_of_the_shared_rule() {
        assert_eq!(splitmix64(0), 0xe220a8397b1dcdaf);
        assert_eq!(split_hash(2, 51, 42), 0x8ea496bc7dcc81a3);
    }

    #[test]
    fn twenty_percent_rounded_half_up_and_small_users_train_only() {
        let rows: Vec<Triple> = (0..7)
            .map(|i| Triple {
                user: 1,
                item: i,
                weight: 1.0,
            })
            .chain((0..4).map(|i| Triple {
                user: 2,
                item: i,
                weight: 1.0,
            }))
            .collect();
        let (train, test) = holdout(&rows, 42, 5);
        assert_eq!(test.len(), 1); // (14 + 5) / 10
        assert!(test.iter().all(|r| r.user == 1));
        assert_eq!(train.len(), 10);
    }
}
