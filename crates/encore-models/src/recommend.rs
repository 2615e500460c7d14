//! Top-k selection over item scores, excluding a user's training items.

/// The `k` best items by `scores` (ties by lower index), skipping `exclude` (sorted).
pub fn top_k(scores: &[f32], exclude: &[u32], k: usize) -> Vec<u32> {
    // a bounded min-heap would do as well; a sorted vector of k is faster for small k
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    let mut ex = exclude.iter().peekable();
    for (i, &s) in scores.iter().enumerate() {
        let i = i as u32;
        while ex.peek().is_some_and(|&&e| e < i) {
            ex.next();
        }
        if ex.peek() == Some(&&i) {
            continue;
        }
        if best.len() == k && best.last().is_some_and(|&(b, _)| s <= b) {
            continue;
        }
        let pos = best.partition_point(|&(b, _)| b >= s);
        best.insert(pos, (s, i));
        best.truncate(k);
    }
    best.into_iter().map(|(_, i)| i).collect()
}

/// As [`top_k`] but faster for long score lists: the excluded items are masked in place
/// (their scores become −∞), so the scan has no look-up per item.
pub fn top_k_masked(scores: &mut [f32], exclude: &[u32], k: usize) -> Vec<u32> {
    for &e in exclude {
        if let Some(s) = scores.get_mut(e as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    let mut worst = f32::NEG_INFINITY;
    for (i, &s) in scores.iter().enumerate() {
        // strictly better than the current k-th (ties keep the lower index), or still filling
        if s > worst || (best.len() < k && s > f32::NEG_INFINITY) {
            let pos = best.partition_point(|&(b, _)| b >= s);
            best.insert(pos, (s, i as u32));
            best.truncate(k);
            if best.len() == k {
                worst = best[k - 1].0;
            }
        }
    }
    best.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn excludes_and_orders_ties_by_index() {
        let scores = [0.5, 0.9, 0.9, 0.1, 0.7];
        assert_eq!(super::top_k(&scores, &[1], 3), vec![2, 4, 0]);
        assert_eq!(super::top_k(&scores, &[], 2), vec![1, 2]);
    }

    #[test]
    fn masked_selection_agrees_with_the_plain_one() {
        let scores: Vec<f32> = (0..500u32).map(|i| ((i * 7919) % 101) as f32).collect();
        let exclude: Vec<u32> = (0..500).step_by(3).collect();
        for k in [1, 10, 50] {
            let mut s = scores.clone();
            assert_eq!(
                super::top_k_masked(&mut s, &exclude, k),
                super::top_k(&scores, &exclude, k)
            );
        }
    }
}
