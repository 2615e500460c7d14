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
    let mut top = TopK::new(k);
    top.offer(scores, 0);
    top.into_items()
}

/// The `k` best (score, item) pairs seen so far, best first, ties kept by the lower item when
/// items are offered in increasing order. Scores of −∞ (masked items) and NaN never enter.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    best: Vec<(f32, u32)>,
    /// the k-th best score once there are k, −∞ before
    worst: f32,
}

impl TopK {
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            best: Vec::with_capacity(k + 1),
            worst: f32::NEG_INFINITY,
        }
    }

    /// Offers the scores of items `base`, `base + 1`, ...
    pub fn offer(&mut self, scores: &[f32], base: u32) {
        if self.k == 0 {
            return;
        }
        // once full, most blocks of eight hold nothing better than the k-th: one vectorized
        // comparison skips them
        let mut blocks = scores.chunks_exact(8);
        let mut at = base;
        for block in &mut blocks {
            let max = block.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
            if self.best.len() < self.k || max > self.worst {
                self.offer_each(block, at);
            }
            at += 8;
        }
        self.offer_each(blocks.remainder(), at);
    }

    fn offer_each(&mut self, scores: &[f32], base: u32) {
        for (i, &s) in scores.iter().enumerate() {
            // strictly better than the current k-th (ties keep the lower index), or still filling
            if s > self.worst || (self.best.len() < self.k && s > f32::NEG_INFINITY) {
                let pos = self.best.partition_point(|&(b, _)| b >= s);
                self.best.insert(pos, (s, base + i as u32));
                self.best.truncate(self.k);
                if self.best.len() == self.k {
                    self.worst = self.best[self.k - 1].0;
                }
            }
        }
    }

    pub fn into_items(self) -> Vec<u32> {
        self.best.into_iter().map(|(_, i)| i).collect()
    }

    /// (score, item), best first.
    pub fn into_scored(self) -> Vec<(f32, u32)> {
        self.best
    }
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
