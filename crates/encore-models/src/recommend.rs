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

#[cfg(test)]
mod tests {
    #[test]
    fn excludes_and_orders_ties_by_index() {
        let scores = [0.5, 0.9, 0.9, 0.1, 0.7];
        assert_eq!(super::top_k(&scores, &[1], 3), vec![2, 4, 0]);
        assert_eq!(super::top_k(&scores, &[], 2), vec![1, 2]);
    }
}
