//! The `encore` binary. Parses flags, loads the layered config, runs one command, and turns errors
//! into `error: <what> (<hint>)` and an exit status: 0 ok, 1 runtime failure, 2 usage or config.

// printing is this crate's job
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod error;
mod output;

use clap::Parser;
use cli::{Cli, Command};
use encore_config::{Flag, Layers, Loaded, LogFormat, LogLevel};
use error::CliError;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" to clap; both print and succeed
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let json = cli.global.json;
    let mut debug = cli
        .global
        .log_level
        .as_deref()
        .is_some_and(|l| l == "debug" || l == "trace");
    let result = load_config(&cli).and_then(|loaded| {
        debug |= matches!(loaded.config.log.level, LogLevel::Debug | LogLevel::Trace);
        init_logging(&loaded);
        run(cli, &loaded)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            err.report(json, debug);
            ExitCode::from(err.exit_status())
        }
    }
}

fn load_config(cli: &Cli) -> Result<Loaded, CliError> {
    let g = &cli.global;
    let mut flags = Vec::new();
    if let Some(dir) = &g.data_dir {
        flags.push(Flag {
            key: "data.dir",
            name: "--data-dir",
            raw: dir.display().to_string(),
        });
    }
    if let Some(level) = &g.log_level {
        flags.push(Flag {
            key: "log.level",
            name: "--log-level",
            raw: level.clone(),
        });
    }
    if let Some(format) = &g.log_format {
        flags.push(Flag {
            key: "log.format",
            name: "--log-format",
            raw: format.clone(),
        });
    }
    let layers =
        Layers::discover(g.config.as_deref(), std::env::vars(), flags).map_err(CliError::config)?;
    layers.load().map_err(CliError::config)
}

fn init_logging(loaded: &Loaded) {
    use tracing_subscriber::EnvFilter;
    let log = &loaded.config.log;
    // RUST_LOG, when set, refines the level per module (e.g. encore_sim=trace)
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(log.level.as_str()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match log.format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn run(cli: Cli, loaded: &Loaded) -> Result<(), CliError> {
    let out = output::Output::new(cli.global.json);
    let dir = &loaded.config.data.dir;
    if cli.command.reads_only() && !dir.is_dir() {
        return Err(CliError::usage(
            format!("data directory {} does not exist", dir.display()),
            "pass --data-dir (or data.dir) of an existing data directory; `encore demo` or \
             `encore ingest` makes one",
        ));
    }
    // where this data directory's metadata lives, before any component opens its store
    let storage = &loaded.config.storage;
    let backend =
        encore_storage::metadata::Backend::parse(&storage.metadata, &storage.metadata_schema)?;
    encore_storage::metadata::bind(dir, backend);
    encore_storage::objects::bind(
        dir,
        encore_storage::objects::Backend::parse(&storage.objects)?,
    );
    encore_storage::bus::bind(
        dir,
        encore_storage::bus::Backend::parse(&storage.bus, &storage.bus_stream)?,
    );
    encore_storage::kv::bind(
        dir,
        encore_storage::kv::Backend::parse(&storage.online, &storage.online_prefix)?,
    );
    match cli.command {
        Command::Demo(args) => commands::demo::run(loaded, &args, &out),
        Command::Config(cmd) => commands::config::run(loaded, cmd, &out),
        Command::Sim(cmd) => commands::sim::run(cmd, &out),
        Command::Data(cmd) => commands::data::run(loaded, &cmd, &out),
        Command::Ingest(args) => commands::events::ingest(loaded, &args, &out),
        Command::Import(cmd) => commands::events::import(loaded, cmd, &out),
        Command::Events(cmd) => commands::events::run(loaded, &cmd, &out),
        Command::Serve(args) => commands::serve::run(loaded, &args, &out),
        Command::Train(args) => commands::train::run(loaded, &args, &out),
        Command::Models(cmd) => commands::models::run(loaded, cmd, &out),
        Command::Eval(args) => commands::eval::run(loaded, &args, &out),
        Command::Stats(cmd) => commands::stats::run(cmd, &out),
        Command::Experiments(cmd) => commands::experiments::run(loaded, cmd, &out),
        Command::Traces(cmd) => commands::traces::run(loaded, cmd, &out),
        Command::Evals(cmd) => commands::llm_evals::evals(loaded, cmd, &out),
        Command::Datasets(cmd) => commands::llm_evals::datasets(loaded, cmd, &out),
        Command::Alerts(cmd) => commands::llm_evals::alerts(loaded, cmd, &out),
        Command::Features(cmd) => commands::features::run(loaded, cmd, &out),
        Command::Bench(cmd) => commands::bench::run(cmd, &out),
        Command::Keys(cmd) => commands::access::keys(loaded, cmd, &out),
        Command::Audit(cmd) => commands::access::audit(loaded, cmd, &out),
        Command::Privacy(cmd) => commands::privacy::run(loaded, cmd, &out),
        Command::Monitors(cmd) => commands::monitors::run(loaded, cmd, &out),
    }
}
