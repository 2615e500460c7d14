//! One error type for the binary: a stable code, a message, a hint, and the exit status.

use encore_core::{Coded, ErrorCode};
use std::backtrace::Backtrace;

/// Boxed: errors are rare and `Result<_, CliError>` stays one pointer wide.
#[derive(Debug)]
pub struct CliError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    code: ErrorCode,
    message: String,
    hint: Option<String>,
    /// a usage or configuration mistake: exit status 2
    usage: bool,
    /// the chain of underlying causes, for --log-level debug
    causes: Vec<String>,
    backtrace: Backtrace,
}

impl<E: Coded> From<E> for CliError {
    fn from(e: E) -> Self {
        let mut causes = Vec::new();
        let mut source = e.source();
        while let Some(s) = source {
            causes.push(s.to_string());
            source = s.source();
        }
        CliError(Box::new(Inner {
            code: e.code(),
            message: e.to_string(),
            hint: e.hint(),
            usage: false,
            causes,
            backtrace: Backtrace::capture(),
        }))
    }
}

impl CliError {
    /// Configuration errors are usage errors, whatever their code.
    pub fn config(e: encore_config::ConfigError) -> Self {
        let mut err = CliError::from(e);
        err.0.usage = true;
        err
    }

    /// A bad flag value that clap's grammar could not catch.
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError(Box::new(Inner {
            code: ErrorCode::InvalidArgument,
            message: message.into(),
            hint: Some(hint.into()),
            usage: true,
            causes: Vec::new(),
            backtrace: Backtrace::capture(),
        }))
    }

    /// A runtime failure that is neither a usage mistake nor a library error (exit status 1).
    pub fn failed(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError(Box::new(Inner {
            code: ErrorCode::FailedPrecondition,
            message: message.into(),
            hint: Some(hint.into()),
            usage: false,
            causes: Vec::new(),
            backtrace: Backtrace::capture(),
        }))
    }

    pub fn exit_status(&self) -> u8 {
        let this = &self.0;
        if this.usage {
            return 2;
        }
        match this.code {
            ErrorCode::InvalidArgument => 2,
            ErrorCode::NotFound
            | ErrorCode::Conflict
            | ErrorCode::FailedPrecondition
            | ErrorCode::Unauthenticated
            | ErrorCode::PermissionDenied
            | ErrorCode::ResourceExhausted
            | ErrorCode::TooLarge
            | ErrorCode::UnsupportedMedia
            | ErrorCode::Unavailable
            | ErrorCode::DataLoss
            | ErrorCode::Internal => 1,
        }
    }

    /// Prints the error on stderr (and as JSON on stdout with `--json`).
    pub fn report(&self, json: bool, debug: bool) {
        let this = &self.0;
        match &this.hint {
            Some(hint) => eprintln!("error: {} ({hint})", this.message),
            None => eprintln!("error: {}", this.message),
        }
        if debug {
            for cause in &this.causes {
                eprintln!("  caused by: {cause}");
            }
            eprintln!("  code: {}\n{}", this.code, this.backtrace);
        }
        if json {
            let body = serde_json::json!({
                "error": { "code": this.code.as_str(), "message": this.message, "hint": this.hint }
            });
            println!("{body}");
        }
    }
}
