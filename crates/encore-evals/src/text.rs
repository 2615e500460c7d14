//! Text normalization shared by the evaluators.

/// SQuAD-style normalization: lowercase, punctuation removed, English articles dropped,
/// whitespace collapsed; the tokens that remain.
pub fn tokens(s: &str) -> Vec<String> {
    s.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .map(str::to_owned)
        .collect()
}

/// Sentences: split after `.`, `!`, `?` (and newlines), trimmed, empty ones dropped.
pub fn sentences(s: &str) -> Vec<&str> {
    s.split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|t| t.chars().any(char::is_alphanumeric))
        .collect()
}

/// Length of the longest common subsequence of two token lists.
pub fn lcs(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}
