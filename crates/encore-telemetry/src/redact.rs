//! Privacy before persistence: personal data is replaced in span content and attribute values
//! before anything is written (WAL included).
//!
//! - emails → `[EMAIL]`;
//! - card numbers (13 to 19 digits, spaces or dashes allowed, **Luhn-valid**) → `[CARD]`;
//!   digit runs that fail the Luhn check (order numbers, ids) are left alone;
//! - phone numbers (an international `+` prefix, or 10 to 15 digits in phone-like groups)
//!   → `[PHONE]`;
//! - IPv4 and IPv6 addresses (validated by the standard parser) → `[IP]`;
//! - each configured pattern → `[REDACTED]`.
//!
//! Lookalikes are kept: a date and time (`2024-03-01 07:04:00`) is not a phone number, and a
//! dotted version after `version`, `release`, `build` and the like (`version 1.2.3.4`) is not an
//! address.

use regex::Regex;
use serde::Serialize;
use std::sync::OnceLock;

/// How many values of each kind were replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Redactions {
    pub emails: u64,
    pub cards: u64,
    pub phones: u64,
    pub ips: u64,
    pub custom: u64,
}

impl Redactions {
    pub fn total(&self) -> u64 {
        self.emails + self.cards + self.phones + self.ips + self.custom
    }

    pub fn add(&mut self, o: &Redactions) {
        self.emails += o.emails;
        self.cards += o.cards;
        self.phones += o.phones;
        self.ips += o.ips;
        self.custom += o.custom;
    }
}

struct Patterns {
    date: Regex,
    email: Regex,
    digits: Regex,
    ipv4: Regex,
    ipv6: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        date: Regex::new(
            r"^(?:19|20)\d\d[-./](?:0[1-9]|1[0-2])[-./](?:0[1-9]|[12]\d|3[01])(?:\D|$)",
        )
        .expect("date pattern"),
        email: Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
            .expect("email pattern"),
        // a run of digits with single separators, optionally after a `+` or in parentheses
        digits: Regex::new(r"\+?\(?\d(?:[\d]|[ .\-()]\(?\d|\)\s?\d)*\d").expect("digit pattern"),
        ipv4: Regex::new(
            r"\b(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\b",
        )
        .expect("ipv4 pattern"),
        ipv6: Regex::new(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?")
            .expect("ipv6 pattern"),
    })
}

/// Whether `before` ends with a word that makes the dotted number after it a version.
fn after_version_word(before: &str) -> bool {
    let word: String = before
        .trim_end_matches([' ', ':', '=', '\t'])
        .chars()
        .rev()
        .take_while(|c| c.is_alphabetic())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<String>()
        .to_lowercase();
    matches!(
        word.as_str(),
        "version"
            | "ver"
            | "v"
            | "release"
            | "build"
            | "firmware"
            | "revision"
            | "rev"
            | "sdk"
            | "app"
            | "os"
            | "ios"
            | "android"
            | "chrome"
            | "python"
            | "node"
    )
}

/// The Luhn checksum of a digit string.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// The redactor of one ingest path: the built-in detectors and the configured patterns.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    custom: Vec<Regex>,
}

impl Redactor {
    /// `custom`: extra patterns (regex syntax), each replaced by `[REDACTED]`.
    pub fn new(custom: &[String]) -> Result<Redactor, regex::Error> {
        Ok(Redactor {
            custom: custom
                .iter()
                .map(|p| Regex::new(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// `text` with personal data replaced, and what was replaced.
    pub fn redact(&self, text: &str, counts: &mut Redactions) -> String {
        let p = patterns();
        // quick exit: nothing that any detector could match
        let interesting = text
            .bytes()
            .any(|b| b == b'@' || b == b':' || b.is_ascii_digit());
        let mut out = if interesting {
            let s = p.email.replace_all(text, |_: &regex::Captures<'_>| {
                counts.emails += 1;
                "[EMAIL]"
            });
            let s = p.ipv6.replace_all(&s, |c: &regex::Captures<'_>| {
                let m = &c[0];
                let addr = m.split('%').next().unwrap_or(m);
                if m.matches(':').count() >= 2 && addr.parse::<std::net::Ipv6Addr>().is_ok() {
                    counts.ips += 1;
                    "[IP]".to_owned()
                } else {
                    m.to_owned()
                }
            });
            let s = {
                let mut out = String::with_capacity(s.len());
                let mut last = 0;
                for m in p.ipv4.find_iter(&s) {
                    out.push_str(&s[last..m.start()]);
                    if after_version_word(&s[..m.start()]) {
                        out.push_str(m.as_str());
                    } else {
                        counts.ips += 1;
                        out.push_str("[IP]");
                    }
                    last = m.end();
                }
                out.push_str(&s[last..]);
                out
            };
            let s = p.digits.replace_all(&s, |c: &regex::Captures<'_>| {
                let m = &c[0];
                // a date (and perhaps an hour) is not a phone number
                if p.date.is_match(m) {
                    return m.to_owned();
                }
                let digits: Vec<u8> = m.bytes().filter(u8::is_ascii_digit).collect();
                let only_card_separators = m
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-');
                if (13..=19).contains(&digits.len()) && only_card_separators && luhn(&digits) {
                    counts.cards += 1;
                    return "[CARD]".to_owned();
                }
                let phone_like = m.starts_with('+')
                    || m.contains('(')
                    || m.bytes().any(|b| matches!(b, b' ' | b'-' | b'.'));
                if (10..=15).contains(&digits.len())
                    && phone_like
                    && !(13..=19).contains(&digits.len())
                    || m.starts_with('+') && (8..=15).contains(&digits.len())
                {
                    counts.phones += 1;
                    return "[PHONE]".to_owned();
                }
                m.to_owned()
            });
            s.into_owned()
        } else {
            text.to_owned()
        };
        for re in &self.custom {
            if re.is_match(&out) {
                out = re
                    .replace_all(&out, |_: &regex::Captures<'_>| {
                        counts.custom += 1;
                        "[REDACTED]"
                    })
                    .into_owned();
            }
        }
        out
    }

    /// Redacts every string inside a JSON value.
    pub fn redact_json(&self, v: &mut serde_json::Value, counts: &mut Redactions) {
        match v {
            serde_json::Value::String(s) => {
                let r = self.redact(s, counts);
                if r != *s {
                    *s = r;
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| self.redact_json(x, counts)),
            serde_json::Value::Object(o) => {
                o.values_mut().for_each(|x| self.redact_json(x, counts))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> (String, Redactions) {
        let mut c = Redactions::default();
        (Redactor::default().redact(s, &mut c), c)
    }

    #[test]
    fn each_kind_is_found_and_lookalikes_are_kept() {
        assert_eq!(r("mail jane.doe+x@example.co.uk now").0, "mail [EMAIL] now");
        assert_eq!(r("card 4111 1111 1111 1111.").0, "card [CARD].");
        assert_eq!(r("card 4111-1111-1111-1111").0, "card [CARD]");
        // fails Luhn: an order number, not a card
        assert_eq!(
            r("order 4111 1111 1111 1112").0,
            "order 4111 1111 1111 1112"
        );
        assert_eq!(r("call +33 6 12 34 56 78 today").0, "call [PHONE] today");
        assert_eq!(r("call (415) 555-2671").0, "call [PHONE]");
        assert_eq!(r("from 192.168.10.254:8080").0, "from [IP]:8080");
        assert_eq!(r("v6 2001:db8:85a3::8a2e:370:7334 ok").0, "v6 [IP] ok");
        assert_eq!(
            r("at 12:30:45 on 2026-11-29, 57°F, 1024 tokens").0,
            "at 12:30:45 on 2026-11-29, 57°F, 1024 tokens"
        );
        let (_, c) = r("a@b.io, c@d.io, 4242424242424242");
        assert_eq!((c.emails, c.cards), (2, 1));
    }

    #[test]
    fn dates_and_versions_are_not_phones_or_addresses() {
        for kept in [
            "2024-03-01 07:04:00",
            "at 2024-03-01 07:04:00 UTC",
            "2024/03/01 07:04",
            "version 1.2.3.4",
            "Version: 10.0.19041.1",
            "build 4.2.0.1 shipped",
            "iOS 17.4.1.2",
        ] {
            let (out, c) = r(kept);
            assert_eq!(out, kept, "{c:?}");
            assert_eq!(c.total(), 0, "{kept}");
        }
        // the real thing beside them is still found
        assert_eq!(r("2024-03-01 from 10.1.2.3").0, "2024-03-01 from [IP]");
        assert_eq!(
            r("version 1.2.3.4, host 8.8.8.8").0,
            "version 1.2.3.4, host [IP]"
        );
        assert_eq!(r("call 070-123 45 67").0, "call [PHONE]");
    }
}
