//! Deterministic evaluators.

use crate::text::{lcs, sentences, tokens};
use crate::{EvalError, Evaluator, Sample, Score};
use std::collections::HashMap;

fn expected<'a>(evaluator: &str, s: &Sample<'a>) -> Result<&'a str, EvalError> {
    s.expected.ok_or_else(|| EvalError::Missing {
        evaluator: evaluator.to_owned(),
        what: "an expected output",
    })
}

fn pass(e: &dyn Evaluator, ok: bool, why: String) -> Score {
    e.score(
        f64::from(u8::from(ok)),
        Some(if ok { "pass" } else { "fail" }),
        Some(why),
    )
}

/// The output equals the expected output, after [`tokens`] normalization.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExactMatch;

impl Evaluator for ExactMatch {
    fn name(&self) -> &'static str {
        "exact_match"
    }
    fn version(&self) -> u32 {
        1
    }
    fn evaluate(&self, s: &Sample<'_>) -> Result<Score, EvalError> {
        let ok = tokens(s.output) == tokens(expected(self.name(), s)?);
        Ok(pass(
            self,
            ok,
            format!(
                "normalized output {}equal to the expected one",
                if ok { "" } else { "not " }
            ),
        ))
    }
}

/// The output contains `needle` (case-insensitive unless asked).
#[derive(Debug, Clone)]
pub struct Contains {
    pub needle: String,
    pub case_sensitive: bool,
}

impl Evaluator for Contains {
    fn name(&self) -> &'static str {
        "contains"
    }
    fn version(&self) -> u32 {
        1
    }
    fn evaluate(&self, s: &Sample<'_>) -> Result<Score, EvalError> {
        let ok = if self.case_sensitive {
            s.output.contains(&self.needle)
        } else {
            s.output
                .to_lowercase()
                .contains(&self.needle.to_lowercase())
        };
        Ok(pass(
            self,
            ok,
            format!("{:?} {}found", self.needle, if ok { "" } else { "not " }),
        ))
    }
}

/// The output matches a regular expression.
#[derive(Debug, Clone)]
pub struct RegexMatch {
    re: regex::Regex,
}

impl RegexMatch {
    pub fn new(pattern: &str) -> Result<RegexMatch, EvalError> {
        regex::Regex::new(pattern)
            .map(|re| RegexMatch { re })
            .map_err(|e| EvalError::Config {
                evaluator: "regex".into(),
                message: e.to_string(),
            })
    }
}

impl Evaluator for RegexMatch {
    fn name(&self) -> &'static str {
        "regex"
    }
    fn version(&self) -> u32 {
        1
    }
    fn evaluate(&self, s: &Sample<'_>) -> Result<Score, EvalError> {
        let ok = self.re.is_match(s.output);
        Ok(pass(
            self,
            ok,
            format!(
                "/{}/ {}matched",
                self.re.as_str(),
                if ok { "" } else { "not " }
            ),
        ))
    }
}

/// The output is valid JSON (a fenced ```json block is unwrapped first).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonValid;

/// The text inside a Markdown code fence, if the output is one.
pub(crate) fn unfence(s: &str) -> &str {
    let t = s.trim();
    t.strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|r| r.strip_suffix("```"))
        .map_or(t, str::trim)
}

impl Evaluator for JsonValid {
    fn name(&self) -> &'static str {
        "json_valid"
    }
    fn version(&self) -> u32 {
        1
    }
    fn evaluate(&self, s: &Sample<'_>) -> Result<Score, EvalError> {
        Ok(
            match serde_json::from_str::<serde_json::Value>(unfence(s.output)) {
                Ok(_) => pass(self, true, "parses as JSON".into()),
                Err(e) => pass(self, false, format!("not JSON: {e}")),
            },
        )
    }
}

/// The output's length in characters is within bounds.
#[derive(Debug, Clone, Copy)]
pub struct LengthBounds {
    pub min: usize,
    pub max: usize,
}

impl Evaluator for LengthBounds {
    fn name(&self) -> &'static str {
        "length_bounds"
    }
    fn version(&self) -> u32 {
        1
    }
    fn evaluate(&self, s: &Sample<'_>) -> Result<Score, EvalError> {
        let n = s.output.chars().count();
        let ok = (self.min..=self.max).contains(&n);
        Ok(pass(
            self,
            ok,
            format!("{n} characters, bounds {}..={}", self.min, self.max),
        ))
    }
}

/// Token-level F1 between output and expected output (SQuAD's definition).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenF1;

/// SQuAD's token F1 of `prediction` against `truth`.
pub fn token_f1(prediction: &str, truth: &str) -> f64 {
    let (p, t) = (tokens(prediction), tokens(truth));
    if p.is_empty() || t.is_empty() {
        return f64::from(u8::from(p == t));
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in &t {
        *counts.entry(w).or_default() += 1;
    }
    let mut common = 0usize;
    for w in &p {
        if let Some(c) = counts.get_mut(w.as_str())
            && *c > 0
        {
            *c -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / t.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

impl Evaluator for TokenF1 {
    fn name(&self) -> &'static str {
        "token_f1"
    }
    fn version(&self) -> u32 {
        1
    }
    fn evaluate(&self, s: &Sample<'_>) -> Result<Score, EvalError> {
        let f = token_f1(s.output, expected(self.name(), s)?);
        Ok(self.score(f, None, None))
    }
}

/// ROUGE-L F-measure (longest common subsequence of tokens) against the expected output.
#[derive(Debug, Clone, Copy, Default)]
pub struct RougeL;

/// ROUGE-L F1 of `candidate` against `reference`.
pub fn rouge_l(candidate: &str, reference: &str) -> f64 {
    let (c, r) = (tokens(candidate), tokens(reference));
    if c.is_empty() || r.is_empty() {
        return 0.0;
    }
    let l = lcs(&c, &r) as f64;
    if l == 0.0 {
        return 0.0;
    }
    let (p, rec) = (l / c.len() as f64, l / r.len() as f64);
    2.0 * p * rec / (p + rec)
}

impl Evaluator for RougeL {
    fn name(&self) -> &'static str {
        "rouge_l"
    }
    fn version(&self) -> u32 {
        1
    }
    fn evaluate(&self, s: &Sample<'_>) -> Result<Score, EvalError> {
        Ok(self.score(rouge_l(s.output, expected(self.name(), s)?), None, None))
    }
}

/// The output refuses ("I can't help with that"). Value 1 means *not* a refusal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Refusal;

const REFUSALS: &[&str] = &[
    "i can't help",
    "i cannot help",
    "i can't assist",
    "i cannot assist",
    "i'm unable to",
    "i am unable to",
    "i won't be able to",
    "i'm sorry, but i can",
    "i am sorry, but i can",
    "as an ai language model",
    "i can't provide",
    "i cannot provide",
    "i'm not able to",
];

impl Evaluator for Refusal {
    fn name(&self) -> &'static str {
        "refusal"
    }
    fn version(&self) -> u32 {
        1
    }
    fn evaluate(&self, s: &Sample<'_>) -> Result<Score, EvalError> {
        let lower = s.output.to_lowercase().replace('’', "'");
        let hit = REFUSALS.iter().find(|p| lower.contains(*p));
        Ok(match hit {
            Some(p) => self.score(0.0, Some("refusal"), Some(format!("says {p:?}"))),
            None => self.score(1.0, Some("answer"), None),
        })
    }
}

/// Grounding in the retrieved context: the share of the answer's sentences whose content words
/// are mostly (at least `threshold` of them) found in the context. Words of three letters or fewer
/// are not content words.
#[derive(Debug, Clone, Copy)]
pub struct Grounding {
    pub threshold: f64,
}

impl Default for Grounding {
    fn default() -> Self {
        Grounding { threshold: 0.5 }
    }
}

impl Evaluator for Grounding {
    fn name(&self) -> &'static str {
        "grounding"
    }
    fn version(&self) -> u32 {
        1
    }
    fn evaluate(&self, s: &Sample<'_>) -> Result<Score, EvalError> {
        let context = s.context.ok_or_else(|| EvalError::Missing {
            evaluator: "grounding".into(),
            what: "a retrieved context",
        })?;
        let known: std::collections::HashSet<String> = tokens(context).into_iter().collect();
        let mut supported = 0usize;
        let mut judged = 0usize;
        let mut unsupported = Vec::new();
        for sentence in sentences(s.output) {
            let content: Vec<String> = tokens(sentence)
                .into_iter()
                .filter(|w| w.chars().count() > 3)
                .collect();
            if content.is_empty() {
                continue;
            }
            judged += 1;
            let found = content.iter().filter(|w| known.contains(*w)).count();
            if found as f64 / content.len() as f64 >= self.threshold {
                supported += 1;
            } else {
                unsupported.push(sentence);
            }
        }
        if judged == 0 {
            return Ok(self.score(1.0, Some("grounded"), Some("no factual sentence".into())));
        }
        let value = supported as f64 / judged as f64;
        let label = if unsupported.is_empty() {
            "grounded"
        } else {
            "ungrounded"
        };
        let explanation = (!unsupported.is_empty()).then(|| {
            format!(
                "{} of {judged} sentences not supported: {:?}",
                unsupported.len(),
                unsupported
            )
        });
        Ok(self.score(value, Some(label), explanation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_expected<'a>(output: &'a str, expected: &'a str) -> Sample<'a> {
        Sample {
            output,
            expected: Some(expected),
            ..Default::default()
        }
    }

    #[test]
    fn exact_contains_regex_json_length() {
        let s = with_expected("The Beatles!", "beatles");
        assert_eq!(ExactMatch.evaluate(&s).unwrap().value, 1.0);
        assert_eq!(
            ExactMatch
                .evaluate(&with_expected("Beatles", "Stones"))
                .unwrap()
                .value,
            0.0
        );
        assert!(
            ExactMatch.evaluate(&Sample::default()).is_err(),
            "needs an expected output"
        );
        let c = Contains {
            needle: "BEATLES".into(),
            case_sensitive: false,
        };
        assert_eq!(c.evaluate(&s).unwrap().value, 1.0);
        let c = Contains {
            needle: "BEATLES".into(),
            case_sensitive: true,
        };
        assert_eq!(c.evaluate(&s).unwrap().value, 0.0);
        let r = RegexMatch::new(r"^\w+ \w+!$").unwrap();
        assert_eq!(r.evaluate(&s).unwrap().value, 1.0);
        assert!(RegexMatch::new("(").is_err());
        let json = |o: &str| {
            JsonValid
                .evaluate(&Sample {
                    output: o,
                    ..Default::default()
                })
                .unwrap()
                .value
        };
        assert_eq!(json(r#"{"tracks": ["t1"]}"#), 1.0);
        assert_eq!(json("```json\n[1, 2]\n```"), 1.0);
        assert_eq!(json("{tracks: 1}"), 0.0);
        let l = LengthBounds { min: 2, max: 5 };
        assert_eq!(
            l.evaluate(&Sample {
                output: "héllo",
                ..Default::default()
            })
            .unwrap()
            .value,
            1.0
        );
        assert_eq!(
            l.evaluate(&Sample {
                output: "héllo!",
                ..Default::default()
            })
            .unwrap()
            .value,
            0.0
        );
    }

    #[test]
    fn token_f1_and_rouge_l_by_hand() {
        // prediction: [cat, sat, on, mat] (articles dropped); truth: [cat, sat, on, red, mat]
        // common 4: precision 1, recall 4/5, F1 = 8/9
        assert!(
            (token_f1("The cat sat on the mat", "A cat sat on a red mat") - 8.0 / 9.0).abs()
                < 1e-12
        );
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("x", "y"), 0.0);
        // LCS of [police, killed, gunman] and [police, kill, gunman] = 2: P = R = 2/3
        assert!(
            (rouge_l("police killed the gunman", "the police kill the gunman") - 2.0 / 3.0).abs()
                < 1e-12
        );
        assert_eq!(rouge_l("same words here", "same words here"), 1.0);
    }

    #[test]
    fn refusals_and_grounding() {
        let refuse = |o: &str| {
            Refusal
                .evaluate(&Sample {
                    output: o,
                    ..Default::default()
                })
                .unwrap()
                .value
        };
        assert_eq!(
            refuse("I’m sorry, but I can’t help with that request."),
            0.0
        );
        assert_eq!(refuse("Here are ten songs for a rainy day."), 1.0);
        let context =
            "Nick Drake released Pink Moon in 1972. The album features acoustic guitar and piano.";
        let sample = Sample {
            output: "Pink Moon was released by Nick Drake. It features acoustic guitar. It was recorded on Mars with trumpets.",
            context: Some(context),
            ..Default::default()
        };
        let g = Grounding::default().evaluate(&sample).unwrap();
        // the first two sentences rest on the context, the third does not
        assert!((g.value - 2.0 / 3.0).abs() < 1e-12, "{g:?}");
        assert_eq!(g.label.as_deref(), Some("ungrounded"));
        assert!(g.explanation.unwrap().contains("Mars"));
        assert!(Grounding::default().evaluate(&Sample::default()).is_err());
    }
}
