//! Results go to stdout: human text by default, one JSON document with `--json`.

use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Prints `value` as JSON, or the text `human` renders.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(s) => print_out(&s),
                Err(e) => eprintln!("error: cannot encode result as JSON: {e}"),
            }
        } else {
            let text = human();
            print_out(text.trim_end());
        }
    }

    /// Prints one plain line (a value meant for `$(...)`), whatever `--json` says.
    pub fn line(&self, text: &str) {
        print_out(text);
    }

    /// A progress bar on stderr when it is a terminal and output is not JSON; hidden otherwise.
    pub fn progress(&self, len: u64, what: &str) -> indicatif::ProgressBar {
        self.bar(len, what, "{msg:>12} [{bar:30}] {pos}/{len} {elapsed}")
    }

    /// A progress bar over bytes, shown with units and the rate (`12.5 MiB/48.0 MiB 30 MiB/s`).
    pub fn progress_bytes(&self, len: u64, what: &str) -> indicatif::ProgressBar {
        self.bar(
            len,
            what,
            "{msg:>12} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {elapsed}",
        )
    }

    fn bar(&self, len: u64, what: &str, template: &str) -> indicatif::ProgressBar {
        use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if self.json {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_owned());
        bar
    }
}

/// Writes a result line to stdout. A closed pipe (`encore ... | head`) is not an error worth a
/// panic: the reader has what it wanted.
fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// `1234567` -> `1,234,567`
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in a human unit.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
        assert_eq!(super::thousands(100), "100");
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
