//! The README as a test: every `sh` block, in order, in one bash session in a fresh directory,
//! as a reader pasting them into a terminal would. Every command must succeed, except those
//! whose comment starts with `# refused:`, which must fail. A block after
//! `<!-- not run by the README test: why -->` is skipped; the skips are listed below, so a new
//! one is a change to this test.
//!
//! The session has a copy of `examples/`, `../shared` beside it (the test skips without it),
//! `encore` first on the PATH, `python3` with duckdb (the ecosystem venv), a free port in place
//! of 7878, the demo world at 300 listeners over 7 days, and a stand-in OpenAI-compatible server
//! as the judge and task model.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The blocks the README says are not run, by the reason it gives.
const SKIPPED: &[&str] = &[
    ".ci/run runs the demo (smoke run) and this test command",
    "each role needs a NATS server and serves until stopped",
];

const SKIP_MARK: &str = "<!-- not run by the README test:";

struct Block {
    /// 1-based line of the opening fence
    line: usize,
    lines: Vec<String>,
    skip: Option<String>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    let mut last_text = "";
    for (i, l) in readme.lines().enumerate() {
        match &mut current {
            Some(b) if l.trim_start().starts_with("```") => {
                out.push(std::mem::replace(
                    b,
                    Block {
                        line: 0,
                        lines: Vec::new(),
                        skip: None,
                    },
                ));
                current = None;
            }
            Some(b) => b.lines.push(l.to_owned()),
            None if l.trim() == "```sh" => {
                let skip = last_text
                    .trim()
                    .strip_prefix(SKIP_MARK)
                    .and_then(|r| r.strip_suffix("-->"))
                    .map(|r| r.trim().to_owned());
                current = Some(Block {
                    line: i + 1,
                    lines: Vec::new(),
                    skip,
                });
            }
            None => {}
        }
        if !l.trim().is_empty() {
            last_text = l;
        }
    }
    out
}

/// One command of a block: its lines joined (continuations, open quotes, heredocs).
struct Cmd {
    line: usize,
    text: String,
    refused: bool,
}

/// Whether `text` leaves a single or double quote open (a `#` comment ends the scan).
fn open_quote(text: &str) -> bool {
    let (mut single, mut double, mut prev) = (false, false, ' ');
    for c in text.chars() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single && prev != '\\' => double = !double,
            '#' if !single && !double && (prev == ' ' || prev == '\n') => {
                // the rest of this line is a comment
                return single || double;
            }
            _ => {}
        }
        prev = c;
    }
    single || double
}

fn commands(block: &Block) -> Vec<Cmd> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < block.lines.len() {
        let first = &block.lines[i];
        let start = i;
        i += 1;
        if first.trim().is_empty() || first.trim_start().starts_with('#') {
            continue;
        }
        let mut text = first.clone();
        // a heredoc runs to its terminator
        if let Some(at) = text.find("<<") {
            let word: String = text[at + 2..]
                .trim_start_matches('-')
                .trim_start()
                .trim_matches('\'')
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            while i < block.lines.len() {
                text.push('\n');
                text.push_str(&block.lines[i]);
                i += 1;
                if block.lines[i - 1].trim() == word {
                    break;
                }
            }
        }
        while (text.trim_end().ends_with('\\') || open_quote(&text)) && i < block.lines.len() {
            text.push('\n');
            text.push_str(&block.lines[i]);
            i += 1;
        }
        let refused = text.lines().any(|l| l.contains("# refused:"));
        out.push(Cmd {
            line: block.line + 1 + start,
            text,
            refused,
        });
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An OpenAI-compatible chat server: judge prompts (they carry `[Answer]: `) get a good score,
/// anything else the answer "Teardrop".
fn stand_in_llm() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let body = loop {
                    let Ok(n) = stream.read(&mut chunk) else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|h| {
                                let (k, v) = h.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break buf[end + 4..end + 4 + len].to_vec();
                        }
                    }
                };
                let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let prompt = request["messages"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .filter_map(|x| x["content"].as_str())
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                let content = if prompt.contains("[Answer]: ") {
                    r#"{"score": 0.9, "label": "factual", "explanation": "grounded"}"#
                } else {
                    "Teardrop"
                };
                let reply = serde_json::json!({
                    "id": "chatcmpl-readme",
                    "model": request["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 120, "completion_tokens": 12}
                })
                .to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                    reply.len()
                );
            });
        }
    });
    url
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn every_readme_example_runs() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest = env!("CARGO_MANIFEST_DIR");
    if encore_core::shared::path(manifest, "datasets").is_none() {
        return;
    }
    let shared = encore_core::shared::root(manifest);
    for tool in ["bash", "curl", "jq"] {
        if crate::ecosystem::which(tool).is_none() {
            return crate::ecosystem::missing(tool);
        }
    }
    let Some(python) = crate::ecosystem::python() else {
        return crate::ecosystem::missing("python3 with duckdb");
    };
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let all = blocks(&readme);
    let skipped: Vec<&str> = all.iter().filter_map(|b| b.skip.as_deref()).collect();
    assert_eq!(skipped, SKIPPED, "the README's skipped blocks changed");
    let port = free_port();
    let mut script = String::from(
        "set -uo pipefail\n\
         trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n\
         fail() { echo \"README.md:$1: $2\" >&2; exit 1; }\n",
    );
    let mut count = 0;
    for block in all.iter().filter(|b| b.skip.is_none()) {
        for cmd in commands(block) {
            count += 1;
            let text = cmd
                .text
                .replace("localhost:7878", &format!("localhost:{port}"))
                .replace("127.0.0.1:7878", &format!("127.0.0.1:{port}"));
            let first = cmd.text.lines().next().unwrap_or("").replace('\'', "");
            script.push_str(&format!(
                "echo '+ README.md:{}: {first}'\n{{ {text}\n}}\n",
                cmd.line
            ));
            if cmd.refused {
                script.push_str(&format!(
                    "[ $? -ne 0 ] || fail {} 'succeeded, but the README says it is refused'\n",
                    cmd.line
                ));
            } else {
                script.push_str(&format!(
                    "s=$?; [ $s -eq 0 ] || fail {} \"exited $s\"\n",
                    cmd.line
                ));
            }
        }
    }
    script.push_str("echo README-OK\n");
    assert!(count > 100, "only {count} commands found in the README");

    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    copy_dir(&repo.join("examples"), &work.join("examples"));
    std::os::unix::fs::symlink(&shared, tmp.path().join("shared")).unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_encore"), bin.join("encore")).unwrap();
    // the venv's own bin directory: a python3 symlinked elsewhere would not find its venv
    let venv_bin = python.parent().unwrap().to_path_buf();
    let path = std::env::join_paths([bin, venv_bin].into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    std::fs::write(tmp.path().join("readme.sh"), &script).unwrap();
    let judge = stand_in_llm();
    let mut cmd = Command::new("bash");
    cmd.arg(tmp.path().join("readme.sh"))
        .current_dir(&work)
        .env("PATH", path)
        .env_remove("ENCORE_CONFIG")
        .env_remove("ENCORE_API_KEY");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ENCORE__")) {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .envs([
            ("ENCORE__SERVER__BIND", format!("127.0.0.1:{port}")),
            ("ENCORE__SERVER__OTLP_GRPC", String::new()),
            ("ENCORE__DEMO__USERS", "300".into()),
            ("ENCORE__DEMO__DAYS", "7".into()),
            ("ENCORE__EVALS__JUDGE__BASE_URL", judge),
            ("ENCORE__EVALS__JUDGE__MODEL", "gpt-4o-mini".into()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // both pipes drained on threads, so a chatty command never blocks on a full pipe
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(1500) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let tail = |s: &str, n: usize| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    assert!(
        status.is_some_and(|s| s.success()) && out.contains("README-OK"),
        "the README failed ({status:?}):\n--- stdout\n{}\n--- stderr\n{}",
        tail(&out, 60),
        tail(&err, 60)
    );
}

#[test]
fn commands_are_split_as_bash_reads_them() {
    let b = Block {
        line: 10,
        lines: [
            "encore a   # one",
            "# a comment",
            "api x -d '{\"a\": 1,",
            "  \"b\": 2}'",
            "encore c \\",
            "  --d   # refused: nope",
            "python3 - <<'PY'",
            "print('it''s')",
            "PY",
            "echo \"it's\"",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        skip: None,
    };
    let c = commands(&b);
    assert_eq!(
        c.len(),
        5,
        "{:?}",
        c.iter().map(|c| &c.text).collect::<Vec<_>>()
    );
    assert_eq!((c[0].line, c[1].line, c[2].line), (11, 13, 15));
    assert!(c[1].text.ends_with("2}'"));
    assert!(c[2].refused && !c[0].refused);
    assert!(c[3].text.ends_with("PY"));
    assert_eq!(c[4].text, "echo \"it's\"");
}
