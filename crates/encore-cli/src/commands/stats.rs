//! `encore stats verify`: the statistics against a file of reference vectors.

use crate::cli::StatsCommand;
use crate::error::CliError;
use crate::output::Output;
use serde::Serialize;

#[derive(Serialize)]
struct VerifyReport {
    vectors: usize,
    passed: usize,
    failed: Vec<Failure>,
    not_supported: Vec<String>,
    out: String,
}

#[derive(Serialize)]
struct Failure {
    id: String,
    fields: Vec<String>,
}

pub fn run(cmd: StatsCommand, out: &Output) -> Result<(), CliError> {
    let StatsCommand::Verify { vectors, out: path } = cmd;
    let text = std::fs::read_to_string(&vectors).map_err(|e| {
        CliError::usage(
            format!("cannot read {}: {e}", vectors.display()),
            "pass a stats-vectors.json file",
        )
    })?;
    let file: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        CliError::usage(
            format!("{}: not JSON: {e}", vectors.display()),
            "pass a stats-vectors.json file",
        )
    })?;
    let v = encore_stats::oracle::verify(&file);
    let results = serde_json::json!({"results": v.results});
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&results).unwrap_or_default(),
    )
    .map_err(|e| {
        CliError::failed(
            format!("cannot write {}: {e}", path.display()),
            "check the path",
        )
    })?;
    let report = VerifyReport {
        vectors: v.results.len() + v.unsupported.len(),
        passed: v.results.len() - v.failures.len(),
        failed: v
            .failures
            .into_iter()
            .map(|(id, fields)| Failure { id, fields })
            .collect(),
        not_supported: v.unsupported,
        out: path.display().to_string(),
    };
    out.emit(&report, || {
        let mut text = format!(
            "{} of {} vectors pass; {} fail; {} not supported; results in {}",
            report.passed,
            report.vectors,
            report.failed.len(),
            report.not_supported.len(),
            report.out
        );
        for f in &report.failed {
            text.push_str(&format!("\n{}: {}", f.id, f.fields.join("; ")));
        }
        text
    });
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::failed(
            format!("{} vectors fail", report.failed.len()),
            "see the fields listed above",
        ))
    }
}
