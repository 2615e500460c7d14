//! The command-line grammar: `encore <noun> <verb>`, global flags on every level.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "encore",
    version,
    about = "Self-hosted personalization and ML operations for music streaming",
    long_about = "encore turns listening events into personalized recommendations and runs the \
                  ML lifecycle in between: ingestion with data contracts, training, evaluation, \
                  a model registry, serving, experiments and observability.\n\n\
                  Start with `encore demo`.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every command (before or after the subcommand).
#[derive(Debug, Args)]
pub struct Global {
    /// Data directory [default: ./encore-data, or data.dir from the config]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Config file [default: ./encore.toml when present]
    #[arg(long, global = true, value_name = "FILE", env = "ENCORE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log level: error, warn, info, debug, trace [default: info, or log.level]
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format: text or json [default: text, or log.format]
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Print results as JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on a simulated world and print what was made
    Demo(DemoArgs),
    /// Show or create configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Simulate a music streaming service (catalog, listeners, events)
    #[command(subcommand)]
    Sim(SimCommand),
    /// Inspect the data directory
    #[command(subcommand)]
    Data(DataCommand),
    /// Ingest event files (JSON lines, CSV, Parquet; .gz/.zst) or a simulated world directory
    Ingest(IngestArgs),
    /// Import a public dataset (HetRec Last.fm, MovieLens, a Spotify streaming history)
    #[command(subcommand)]
    Import(ImportCommand),
    /// Inspect the event log: statistics, quarantined rows, integrity
    #[command(subcommand)]
    Events(EventsCommand),
    /// Run the HTTP API (POST /v1/events, ...) until interrupted
    Serve(ServeArgs),
    /// Train a model on the event log (or a TSV), evaluate it, and register it as a new version
    Train(TrainArgs),
    /// The model registry: versions, aliases, the production gate, history, model cards
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Train a model on a train split and report offline ranking metrics on the test split
    Eval(EvalArgs),
    /// Load generators for benchmarks (against servers on this machine)
    #[command(subcommand)]
    Bench(BenchCommand),
    /// A/B experiments: define, start, stop, list; assignments of a listener
    #[command(subcommand)]
    Experiments(ExperimentsCommand),
    /// Statistics: check the implementation against reference vectors
    #[command(subcommand)]
    Stats(StatsCommand),
    /// Traces of LLM features and model calls in the data directory (stored by `encore serve`)
    #[command(subcommand)]
    Traces(TracesCommand),
    /// Evaluation of LLM features: scores, quality, judge calibration, online rules, experiment
    /// runs, annotation queues
    #[command(subcommand)]
    Evals(EvalsCommand),
    /// Evaluation datasets: versioned, from JSONL or from traces
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// Alerts on trace and score metrics: rules, current states, history
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// The feature store: definitions, materialization, training sets, online values
    #[command(subcommand)]
    Features(FeaturesCommand),
    /// API keys: create (shown once), list, revoke
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit log: who changed what, and who read trace content
    #[command(subcommand)]
    Audit(AuditCommand),
    /// One listener's data: export everything held about them, or erase it (stop the server
    /// first, or use POST /v1/privacy/erasures)
    #[command(subcommand)]
    Privacy(PrivacyCommand),
    /// Monitoring of the listening data: drift, volume and freshness monitors over profiles of
    /// the event log, with their verdicts per window and slice
    #[command(subcommand)]
    Monitors(MonitorsCommand),
}

impl Command {
    /// Commands that only read what an earlier command stored: a data directory that does not
    /// exist is a mistyped path, not an empty one, and they refuse it instead of creating it.
    pub fn reads_only(&self) -> bool {
        match self {
            Command::Data(DataCommand::Info) => true,
            Command::Events(cmd) => !matches!(cmd, EventsCommand::Repair),
            Command::Models(cmd) => matches!(
                cmd,
                ModelsCommand::List
                    | ModelsCommand::Show { .. }
                    | ModelsCommand::History { .. }
                    | ModelsCommand::Card { .. }
            ),
            Command::Traces(cmd) => matches!(
                cmd,
                TracesCommand::Count { .. }
                    | TracesCommand::List { .. }
                    | TracesCommand::Show { .. }
                    | TracesCommand::Verify
                    | TracesCommand::Stats { .. }
            ),
            Command::Experiments(cmd) => matches!(
                cmd,
                ExperimentsCommand::List
                    | ExperimentsCommand::Show { .. }
                    | ExperimentsCommand::Report { .. }
            ),
            Command::Evals(cmd) => matches!(
                cmd,
                EvalsCommand::Scores { .. }
                    | EvalsCommand::Quality { .. }
                    | EvalsCommand::Calibration { .. }
                    | EvalsCommand::Runs
                    | EvalsCommand::Rules(RulesCommand::List)
            ),
            Command::Datasets(cmd) => {
                matches!(cmd, DatasetsCommand::List | DatasetsCommand::Show { .. })
            }
            Command::Alerts(cmd) => {
                matches!(cmd, AlertsCommand::List | AlertsCommand::History { .. })
            }
            Command::Features(cmd) => matches!(
                cmd,
                FeaturesCommand::List
                    | FeaturesCommand::Describe { .. }
                    | FeaturesCommand::Get { .. }
                    | FeaturesCommand::Skew { .. }
                    | FeaturesCommand::TrainingSet { .. }
            ),
            Command::Keys(KeysCommand::List) | Command::Audit(_) => true,
            Command::Monitors(cmd) => {
                matches!(cmd, MonitorsCommand::List | MonitorsCommand::Results { .. })
            }
            Command::Privacy(cmd) => {
                matches!(
                    cmd,
                    PrivacyCommand::Export { .. } | PrivacyCommand::Erasures
                )
            }
            _ => false,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// Write every record about USER (events, interactions, impressions, exposures, features,
    /// spans and their content, scores, labels, dataset items, models) as JSON lines to --out
    Export {
        user: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Remove USER from every store of the data directory; the ledger keeps a keyed hash
    Erase { user: String },
    /// The erasure ledger
    Erasures,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once (only its hash is stored)
    Create {
        /// Who uses it; recorded as the actor of what it does (letters, digits, - _ .)
        #[arg(long)]
        name: String,
        /// Comma-separated: events:write, events:read, traces:write, traces:read,
        /// traces:content, recs:read, features:read, evals:read, evals:write, models:read,
        /// models:write, experiments:read, experiments:write, privacy:admin, admin
        #[arg(long)]
        scopes: String,
        /// Limit trace reads and writes to these projects (comma-separated)
        #[arg(long)]
        projects: Option<String>,
        /// Valid for this long: 30d, 12h, 90m [default: until revoked]
        #[arg(long)]
        expires: Option<String>,
        /// Print only the key, for `export ENCORE_API_KEY=$(encore keys create ... --key-only)`
        #[arg(long, conflicts_with = "json")]
        key_only: bool,
    },
    /// Every key (never its secret), newest first
    List,
    /// Revoke a key by id; servers refuse it within 2 s
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Entries oldest first
    List {
        /// Only entries at or after this: epoch ms, YYYY-MM-DD, or an age such as 24h or 7d
        #[arg(long)]
        since: Option<String>,
        #[arg(value_parser = count(1, 10000000), long, default_value_t = 1000)]
        limit: usize,
    },
    /// Recompute the hash chain: finds an entry changed or removed behind the log's back
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum FeaturesCommand {
    /// Check a definitions file (TOML) and make it the current version
    Apply { file: PathBuf },
    /// Views, features and services of the current definitions
    List,
    /// A view or a service in detail
    Describe { name: String },
    /// Load the online store from the event log: plays ending in (start, end]; from where the
    /// last run stopped, up to now, by default
    Materialize {
        #[arg(long)]
        start_ms: Option<i64>,
        #[arg(long)]
        end_ms: Option<i64>,
    },
    /// A point-in-time correct training set: every feature of a service as of each row's `ts`
    TrainingSet {
        /// CSV with a header: the service's key columns and `ts` (ms since the epoch)
        #[arg(long)]
        entities: PathBuf,
        #[arg(long)]
        service: String,
        /// Parquet output
        #[arg(long)]
        out: PathBuf,
    },
    /// Train/serve skew: online values of a sample of each view's entities against the same
    /// features recomputed offline from the event log, as of now
    Skew {
        #[arg(long)]
        service: String,
        /// Entities sampled per view
        #[arg(value_parser = count(1, 10000000), long, default_value_t = 200)]
        sample: usize,
    },
    /// Online values of a service as of now, e.g. --entity user_id=u1,artist_id=a2 (repeatable)
    Get {
        #[arg(long)]
        service: String,
        #[arg(long = "entity", required = true)]
        entities: Vec<String>,
    },
}

/// Which stored scores.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScoreFilterArgs {
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub trace_id: Option<String>,
    #[arg(long)]
    pub span_id: Option<String>,
    #[arg(long)]
    pub evaluator: Option<String>,
    /// A prefix of the source: human:, rule:NAME, backfill:, api
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub from_ms: Option<i64>,
    #[arg(long)]
    pub to_ms: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum EvalsCommand {
    /// Score samples now: evaluators on an input and output given here
    Score {
        /// An evaluator: a name (exact_match, json_valid, refusal, catalog_grounding, ...),
        /// judge:RUBRIC, or a JSON spec; repeatable
        #[arg(long = "evaluator", required = true)]
        evaluators: Vec<String>,
        #[arg(long, default_value = "")]
        input: String,
        #[arg(long)]
        output: String,
        #[arg(long)]
        expected: Option<String>,
        #[arg(long)]
        context: Option<String>,
    },
    /// Stored scores, newest span first
    Scores {
        #[command(flatten)]
        filter: ScoreFilterArgs,
        #[arg(value_parser = count(1, 100000), long, default_value_t = 20)]
        limit: usize,
    },
    /// Pass and fail rates with Wilson 95 % intervals, per evaluator (and slice)
    Quality {
        #[command(flatten)]
        filter: ScoreFilterArgs,
        /// service, model or user
        #[arg(long)]
        slice: Option<String>,
    },
    /// A judge against the human labels on the same spans
    Calibration {
        /// The judge's evaluator name, e.g. judge_hallucination
        #[arg(long)]
        judge: String,
        /// The label schema's name, e.g. hallucination
        #[arg(long)]
        human: String,
        #[arg(value_parser = count(2, 1000), long, default_value_t = 10)]
        bins: usize,
    },
    /// Online evaluation rules
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Run a task over a dataset and score it
    Run {
        /// NAME or NAME@VERSION (the newest version by default)
        #[arg(long)]
        dataset: String,
        /// JSON, or @FILE: {"kind": "chat", "prompt": "... {{input}} ..."} or
        /// {"kind": "http", "url": "http://..."}
        #[arg(long)]
        task: String,
        #[arg(long = "evaluator", required = true)]
        evaluators: Vec<String>,
        #[arg(value_parser = count(1, 256), long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Experiment runs, newest first
    Runs,
    /// Compare run B with run A: paired t-test per evaluator and the items that changed
    Compare {
        a: String,
        b: String,
        #[arg(value_parser = count(1, 1000), long, default_value_t = 10)]
        items: usize,
    },
    /// Annotation queues and human labels
    #[command(subcommand)]
    Queue(QueueCommand),
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    List,
    /// Add or replace a rule: JSON or @FILE, e.g. {"name": "halluc", "service": "chat",
    /// "rate": 0.1, "evaluators": [{"kind": "judge", "rubric": "hallucination"}]}
    Add {
        rule: String,
    },
    Delete {
        name: String,
    },
    /// Score the stored spans a rule picks in a time range, as online evaluation would have
    Backfill {
        name: String,
        #[arg(long)]
        from_ms: Option<i64>,
        #[arg(long)]
        to_ms: Option<i64>,
        #[arg(value_parser = count(1, 1000000000), long, default_value_t = 100_000)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// A new queue: --schema JSON, e.g. {"kind": "categorical", "name": "hallucination",
    /// "values": ["factual", "hallucinated"]}
    Create {
        name: String,
        #[arg(long)]
        schema: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Add items: spans matching the filter, or a dataset's items
    Fill {
        name: String,
        #[command(flatten)]
        traces: TraceQueryArgs,
        /// NAME or NAME@VERSION: the dataset's items instead of spans
        #[arg(long)]
        dataset: Option<String>,
    },
    /// Items of a queue
    Items {
        name: String,
        /// pending or labeled
        #[arg(long)]
        status: Option<String>,
        #[arg(value_parser = count(1, 100000), long, default_value_t = 20)]
        limit: usize,
    },
    /// Label an item; the label must fit the queue's schema
    Label {
        name: String,
        idx: i64,
        #[arg(long)]
        labeller: String,
        /// A value of the schema: a category, or a number
        #[arg(long)]
        label: String,
        #[arg(long)]
        explanation: Option<String>,
    },
}

/// Spans to take (with their content).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TraceQueryArgs {
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long)]
    pub operation: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub from_ms: Option<i64>,
    #[arg(long)]
    pub to_ms: Option<i64>,
    /// Text in the prompt or completion
    #[arg(long)]
    pub text: Option<String>,
    /// Most spans taken (newest first)
    #[arg(value_parser = count(1, 1000000000), long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// A new version from a JSON Lines file ({"input", "expected"?, "context"?, "metadata"?})
    Import {
        name: String,
        #[arg(long)]
        file: PathBuf,
        /// Add to the previous version's items instead of replacing them
        #[arg(long)]
        append: bool,
    },
    /// A new version from stored spans: their input, and their output as the expected output
    FromTraces {
        name: String,
        #[command(flatten)]
        traces: TraceQueryArgs,
        #[arg(long)]
        append: bool,
    },
    /// Every version of every dataset
    List,
    /// A version's items: NAME (the newest version) or NAME@VERSION
    Show { name: String },
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Add or replace a rule: JSON or @FILE, e.g. {"name": "errors", "metric": {"kind":
    /// "error_rate"}, "window_s": 300, "op": "above", "threshold": 0.05, "for_s": 60,
    /// "webhook": "http://127.0.0.1:9000/hook"}
    Add {
        rule: String,
    },
    List,
    Delete {
        name: String,
    },
    /// Firings and resolutions, newest first
    History {
        #[arg(long)]
        rule: Option<String>,
        #[arg(value_parser = count(1, 10000000), long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum MonitorsCommand {
    /// Create or replace the monitors of a TOML file (`[[monitor]]` tables; see
    /// docs/MONITORING.md); a changed monitor judges every window again
    Apply { file: PathBuf },
    /// The monitors and what each found in its latest window (the defaults until any is applied)
    List,
    /// Remove a monitor and its verdicts
    Delete { name: String },
    /// Profile the playback segments not profiled yet, judge every complete window not judged
    /// yet, and print what fired (a server's worker does this every minute)
    Run {
        /// Print every new verdict, not only those that fired
        #[arg(long)]
        all: bool,
        /// Also judge the windows still open, up to now, without storing their verdicts: what
        /// today (or this hour) looks like so far
        #[arg(long)]
        partial: bool,
    },
    /// A monitor's verdicts, newest window first
    Results {
        name: String,
        /// Only verdicts that fired
        #[arg(long)]
        fired: bool,
        /// Only this slice (`all`, `platform=ios`, `country=SE`)
        #[arg(long)]
        slice: Option<String>,
        #[arg(value_parser = count(1, 100000), long, default_value_t = 50)]
        limit: usize,
    },
    /// The default monitors on simulated worlds: false alarms per daily window on unshifted
    /// worlds, and whether each injected shift is caught in its first window, naming the slice
    Calibrate {
        /// Unshifted worlds (seeds 1..=N); each shift kind also gets one world
        #[arg(value_parser = count(1, 1000), long, default_value_t = 20)]
        worlds: usize,
        #[arg(value_parser = count(10, 10000000), long, default_value_t = 1_000)]
        users: usize,
        #[arg(value_parser = count(9, 365), long, default_value_t = 28)]
        days: usize,
        /// The day (0-based) the shifts start
        #[arg(value_parser = count(8, 364), long, default_value_t = 14)]
        shift_day: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// POST JSON-lines event files to a running `encore serve` and report events/s and latency
    HttpIngest {
        /// The server, e.g. 127.0.0.1:7878 (loopback only; the API key comes from ENCORE_API_KEY)
        #[arg(long)]
        addr: String,
        /// JSON-lines event files (e.g. a simulated world's events/events-*.jsonl)
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Events per request
        #[arg(value_parser = count(1, 100000), long, default_value_t = 1_000)]
        batch: usize,
        /// Concurrent connections
        #[arg(value_parser = count(1, 1024), long, default_value_t = 4)]
        connections: usize,
        /// Stop after this many events
        #[arg(value_parser = count(1, 1000000000000), long)]
        limit: Option<usize>,
    },
    /// Recall@k and single-thread queries/s of HNSW against exact inner-product search, over a
    /// model artifact's item vectors (queries: its user vectors) or a synthetic catalogue
    Ann {
        /// A model artifact (ALS or BPR)
        #[arg(long, conflicts_with = "synthetic")]
        artifact: Option<PathBuf>,
        /// Items of a synthetic catalogue instead
        #[arg(value_parser = count(1, 1000000000), long)]
        synthetic: Option<usize>,
        /// Vector width of the synthetic catalogue
        #[arg(value_parser = count(1, 4096), long, default_value_t = 64)]
        width: usize,
        /// Clusters of the synthetic catalogue (items and queries near one of this many
        /// directions, as genres and scenes make them); 0: one shared direction and isotropic
        /// noise around it
        #[arg(value_parser = count(0, 1000000), long, default_value_t = 0)]
        clusters: usize,
        /// Queries (at most)
        #[arg(value_parser = count(1, 100000000), long, default_value_t = 2_000)]
        queries: usize,
        /// Search widths to measure
        #[arg(value_parser = count(1, 100000), long, value_delimiter = ',', default_value = "10,20,40,64,128,256")]
        ef: Vec<usize>,
        /// HNSW graph degree
        #[arg(value_parser = count(2, 256), long, default_value_t = 24)]
        connectivity: usize,
        /// HNSW construction width
        #[arg(value_parser = count(1, 100000), long, default_value_t = 200)]
        ef_construction: usize,

        #[arg(value_parser = count(1, 10000), long, default_value_t = 10)]
        k: usize,
    },
    /// Experiment assignment throughput: build a plan of experiments over domains, then assign
    /// synthetic listeners on one thread
    Assign {
        /// Listeners to assign
        #[arg(value_parser = count(1, 1000000000), long, default_value_t = 2_000_000)]
        users: usize,
        /// Exclusivity domains, each with two experiments taking 40 % of its buckets each
        #[arg(value_parser = count(1, 1000), long, default_value_t = 4)]
        domains: usize,
    },
    /// GET paths from a file at a fixed rate (open loop) and report latency measured from each
    /// request's scheduled time, so queueing counts (no coordinated omission)
    /// A training set of 20 features over synthetic plays, timed by stage, with peak memory
    FeaturesOffline {
        #[arg(value_parser = count(1, 10000000000), long, default_value_t = 10_000_000)]
        events: usize,
        #[arg(value_parser = count(1, 1000000000), long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(value_parser = count(1, 1000000000), long, default_value_t = 100_000)]
        users: usize,
        #[arg(value_parser = count(1, 1000000000), long, default_value_t = 20_000)]
        artists: usize,
        #[arg(value_parser = clap::value_parser!(i64).range(1..=3650), long, default_value_t = 90)]
        days: i64,
        /// The first workload: listeners, artists and rows drawn uniformly (by default listeners
        /// and artists are drawn by popularity, and the rows are plays and popular candidates)
        #[arg(long)]
        uniform: bool,
        /// Write the benchmark's feature definitions to this file and stop
        #[arg(long)]
        write_definitions: Option<PathBuf>,
    },
    HttpGet {
        /// The server, e.g. 127.0.0.1:7878 (loopback only; the API key comes from ENCORE_API_KEY)
        #[arg(long)]
        addr: String,
        /// One request path per line (e.g. /v1/users/u1/recommendations?n=10), used round-robin;
        /// a line `POST PATH BODY` posts BODY instead
        paths: PathBuf,
        /// Requests per second in all
        #[arg(value_parser = positive_f64, long)]
        rate: f64,
        /// How long to send
        #[arg(value_parser = positive_f64, long, default_value_t = 10.0)]
        seconds: f64,
        /// Concurrent keep-alive connections (each sends its share of the schedule)
        #[arg(value_parser = count(1, 1024), long, default_value_t = 16)]
        connections: usize,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: server.bind from the config]; port 0 picks a free port
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
    /// Start even over damaged files: repair them first, as `encore events repair` and
    /// `encore traces repair` do (intact records kept, the originals moved to quarantine)
    #[arg(long)]
    pub repair_damage: bool,
    /// What this node does in a deployment of several [default: server.role from the
    /// config, `all`]: `ingest`, `serve` and `worker` share the bus of `[storage] bus`
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    All,
    Ingest,
    Serve,
    Worker,
}

impl From<RoleArg> for encore_config::Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::All => encore_config::Role::All,
            RoleArg::Ingest => encore_config::Role::Ingest,
            RoleArg::Serve => encore_config::Role::Serve,
            RoleArg::Worker => encore_config::Role::Worker,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TableArg {
    Playback,
    Interaction,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files, or directories written by `encore sim generate`
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Reject a whole file when any of its rows is bad (nothing of it is stored)
    #[arg(long)]
    pub strict: bool,
    /// Event table of the files [default: from the data]
    #[arg(long, value_enum)]
    pub table: Option<TableArg>,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// HetRec 2011 Last.fm 2K (user_artists.dat, artists.dat, tags.dat, user_taggedartists.dat)
    HetrecLastfm {
        /// The dataset's directory
        dir: PathBuf,
    },
    /// MovieLens 100K (u.data, u.item)
    Movielens {
        /// The dataset's directory
        dir: PathBuf,
    },
    /// A Spotify streaming-history export (StreamingHistory*.json or Streaming_History_Audio_*.json)
    SpotifyHistory {
        /// The export's JSON files
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The pseudonymous user id to file the plays under
        #[arg(long, default_value = "me")]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Events per day, listeners, items, streams, skips, rejects by rule, duplicates, storage
    Stats,
    /// Rejected rows with their reasons, most recent first
    Quarantine {
        /// Show at most this many
        #[arg(value_parser = count(1, 10000000), long, default_value_t = 20)]
        limit: usize,
    },
    /// Check the event log without changing it: segment checksums, WAL records, every event id
    /// once within the deduplication window
    Verify,
    /// Repair damage the check found: keep every intact record, move each damaged file unchanged
    /// into <data>/quarantine/damaged/, and report exactly what was lost
    Repair,
    /// Build the user x item interaction matrix (CSR) that training reads, and report its size
    Matrix {
        /// Count plays of at least this many ms (30000: streams only)
        #[arg(long, default_value_t = 30_000)]
        min_ms_played: u32,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Listeners to simulate [default: demo.users]
    #[arg(value_parser = clap::value_parser!(u32).range(1..=100000000), long)]
    pub users: Option<u32>,
    /// Days of listening to simulate [default: demo.days]
    #[arg(value_parser = clap::value_parser!(u32).range(1..=3650), long)]
    pub days: Option<u32>,
    /// Seed of the world [default: demo.seed]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop after registering the model instead of serving it (the default ends with a running
    /// server until Ctrl-C)
    #[arg(long)]
    pub no_serve: bool,
    /// Address to serve on [default: server.bind]
    #[arg(long)]
    pub bind: Option<std::net::SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write a commented config file with every key at its default
    Init {
        /// Where to write it
        #[arg(long, default_value = "encore.toml")]
        path: PathBuf,
        /// Overwrite an existing file
        #[arg(long)]
        force: bool,
    },
    /// Print the effective config and where each value came from
    Show,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Jsonl,
    Parquet,
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Generate a world: catalog, listeners and N days of events, with a manifest
    Generate(GenerateArgs),
    /// Check a generated world against its manifest (sizes, sha256, row counts)
    Verify {
        /// The world's directory (holding manifest.json)
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of listeners
    #[arg(value_parser = clap::value_parser!(u32).range(1..=100000000), long, default_value_t = 2_000)]
    pub users: u32,
    /// Days of listening
    #[arg(value_parser = clap::value_parser!(u32).range(1..=3650), long, default_value_t = 30)]
    pub days: u32,
    /// Seed: the same seed gives byte-identical files
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output directory (created; must be empty unless --force)
    #[arg(long)]
    pub out: PathBuf,
    /// Event file format
    #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
    pub format: FormatArg,
    /// Catalog size in tracks [default: 5 per listener, between 1000 and 1000000]
    #[arg(value_parser = clap::value_parser!(u32).range(1..=100000000), long)]
    pub tracks: Option<u32>,
    /// First simulated day, YYYY-MM-DD
    #[arg(long, default_value = "2026-01-05")]
    pub start: String,
    /// Share of playback rows written broken (each breaking one contract rule, as buggy
    /// clients do), and the same share sent twice: a dirty feed for ingest tests
    #[arg(value_parser = fault_rate, long, default_value_t = 0.0)]
    pub faults: f64,
    /// A change injected from a day on (repeatable), for monitoring tests: `taste:GENRE@DAY`
    /// (listeners turn toward a genre), `release@DAY` (one track takes a large share of plays),
    /// `client-bug:PLATFORM@DAY` (that platform reports ms_played = 0),
    /// `dropout:COUNTRY@DAY` (that country's traffic stops); DAY 0 is the first day
    #[arg(long = "shift", value_name = "KIND@DAY", value_parser = shift_at)]
    pub shifts: Vec<encore_sim::ShiftAt>,
    /// Replace a world already in --out
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Where the data directory is, its format version, and what it holds
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    Als,
    Bpr,
    Itemknn,
    Popularity,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ConfidenceArg {
    /// 1 + alpha * ln(1 + plays)
    Log,
    /// 1 + alpha * plays
    Linear,
    /// 1 + alpha for every pair
    Binary,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SimilarityArg {
    Cosine,
    Bm25,
}

/// The model and its hyper-parameters (flags that do not apply to the chosen model are ignored).
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    #[arg(long, value_enum, default_value_t = ModelArg::Als)]
    pub model: ModelArg,
    /// Latent factors (ALS, BPR)
    #[arg(value_parser = count(1, 1024), long, default_value_t = 64)]
    pub factors: usize,
    /// Iterations (ALS)
    #[arg(value_parser = count(1, 1000), long, default_value_t = 15)]
    pub iterations: usize,
    /// L2 regularization [default: 0.05 for ALS, 0.01 for BPR]
    #[arg(value_parser = non_negative_f32, long)]
    pub regularization: Option<f32>,
    /// How play counts become confidences (ALS, item-kNN)
    #[arg(long, value_enum, default_value_t = ConfidenceArg::Log)]
    pub confidence: ConfidenceArg,
    /// Scale of the confidence curve (ALS, item-kNN)
    #[arg(value_parser = positive_f32, long, default_value_t = 1.0)]
    pub alpha: f32,
    /// Solve each row exactly by Cholesky instead of with CG steps (ALS)
    #[arg(long)]
    pub exact: bool,
    /// Conjugate-gradient steps per row (ALS)
    #[arg(value_parser = count(1, 100), long, default_value_t = 3)]
    pub cg_steps: usize,
    /// SGD epochs (BPR)
    #[arg(value_parser = count(1, 100000), long, default_value_t = 100)]
    pub epochs: usize,
    /// SGD step size (BPR)
    #[arg(value_parser = positive_f32, long, default_value_t = 0.01)]
    pub learning_rate: f32,
    /// Neighbours kept per item (item-kNN)
    #[arg(value_parser = count(1, 100000), long, default_value_t = 100)]
    pub neighbors: usize,
    /// Item-item similarity (item-kNN)
    #[arg(long, value_enum, default_value_t = SimilarityArg::Cosine)]
    pub similarity: SimilarityArg,
    /// BM25 term-frequency saturation (item-kNN with --similarity bm25)
    #[arg(value_parser = non_negative_f32, long, default_value_t = 1.2)]
    pub bm25_k1: f32,
    /// BM25 length normalization (item-kNN with --similarity bm25)
    #[arg(value_parser = unit_f32, long, default_value_t = 0.75)]
    pub bm25_b: f32,
    /// Random seed (initial factors, SGD sampling)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl ModelArgs {
    /// Defaults of every flag for `model`.
    pub fn defaults(model: ModelArg) -> ModelArgs {
        let mut args = <ModelArgsParser as Parser>::parse_from(["encore"]).model;
        args.model = model;
        args
    }

    pub fn config(&self) -> encore_models::model::ModelConfig {
        use encore_models::model::ModelConfig;
        use encore_models::weighting::{Confidence, Scale};
        let confidence = Confidence {
            scale: match self.confidence {
                ConfidenceArg::Log => Scale::Log,
                ConfidenceArg::Linear => Scale::Linear,
                ConfidenceArg::Binary => Scale::Binary,
            },
            alpha: self.alpha,
        };
        match self.model {
            ModelArg::Popularity => ModelConfig::Popularity(Default::default()),
            ModelArg::Itemknn => ModelConfig::ItemKnn(encore_models::itemknn::ItemKnnConfig {
                neighbors: self.neighbors,
                similarity: match self.similarity {
                    SimilarityArg::Cosine => encore_models::itemknn::Similarity::Cosine,
                    SimilarityArg::Bm25 => encore_models::itemknn::Similarity::Bm25 {
                        k1: self.bm25_k1,
                        b: self.bm25_b,
                    },
                },
                confidence,
            }),
            ModelArg::Als => ModelConfig::Als(encore_models::als::AlsConfig {
                factors: self.factors,
                iterations: self.iterations,
                regularization: self.regularization.unwrap_or(0.05),
                cg_steps: self.cg_steps,
                seed: self.seed,
                exact: self.exact,
                confidence,
            }),
            ModelArg::Bpr => ModelConfig::Bpr(encore_models::bpr::BprConfig {
                factors: self.factors,
                epochs: self.epochs,
                learning_rate: self.learning_rate,
                regularization: self.regularization.unwrap_or(0.01),
                seed: self.seed,
            }),
        }
    }
}

/// Parses [`ModelArgs`] alone, for their defaults.
#[derive(Debug, clap::Parser)]
struct ModelArgsParser {
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// With the event log: hold out the last N days (tracks first streamed then) instead of the
    /// shared per-listener holdout
    #[arg(value_parser = clap::value_parser!(u32).range(1..=3650), long, conflicts_with_all = ["train", "test"])]
    pub test_days: Option<u32>,
    /// Training pairs: TSV with header userID<TAB>itemID<TAB>weight (the shared split format).
    /// Without --train: the event log's streams, split by the shared holdout rule. With --train
    /// and no --test, only the fit and recommend-for-all are timed (scale benchmarks)
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Held-out pairs, same format
    #[arg(long, requires = "train")]
    pub test: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Threads (0: every core)
    #[arg(value_parser = count(0, 1024), long, default_value_t = 0)]
    pub threads: usize,
    /// Cut-off of the ranking metrics
    #[arg(value_parser = count(1, 10000), long, default_value_t = 10)]
    pub k: usize,
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Training pairs: TSV with header userID<TAB>itemID<TAB>weight [default: every stream in the
    /// event log, plays per listener and track]
    #[arg(long)]
    pub train: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Threads (0: every core)
    #[arg(value_parser = count(0, 1024), long, default_value_t = 0)]
    pub threads: usize,
    /// Skip computing the training loss after each ALS iteration (saves about 10 % of the time)
    #[arg(long)]
    pub no_loss: bool,
    /// Write the model artifact here as well as into the data directory
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The registered model this becomes a new version of
    #[arg(long, default_value = "recommender")]
    pub name: String,
    /// Skip the offline evaluation (a fit on 80 % of each listener's items, scored on the rest,
    /// next to popularity); without it the version cannot pass the production gate
    #[arg(long)]
    pub no_eval: bool,
    /// Then move `production` to the new version through the gate
    #[arg(long)]
    pub promote: bool,
    /// A note stored with the version
    #[arg(long, default_value = "")]
    pub description: String,
    /// A KEY=VALUE tag stored with the version (repeatable)
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    #[command(flatten)]
    pub gate: GateArgs,
}

/// The production gate [defaults: the `[registry]` section of the config].
#[derive(Debug, Clone, Default, Args)]
pub struct GateArgs {
    /// The offline metric the gate compares [default: registry.gate_metric]
    #[arg(long)]
    pub gate_metric: Option<String>,
    /// How much lower than production's the metric may be [default: registry.gate_tolerance]
    #[arg(value_parser = non_negative_f64, long)]
    pub gate_tolerance: Option<f64>,
    /// The least coverage@10 a production version must have [default: registry.gate_min_coverage]
    #[arg(value_parser = unit_f64, long)]
    pub gate_min_coverage: Option<f64>,
}

impl GateArgs {
    pub fn gate(&self, config: &encore_config::RegistryConfig) -> encore_registry::Gate {
        encore_registry::Gate {
            metric: self
                .gate_metric
                .clone()
                .unwrap_or_else(|| config.gate_metric.clone()),
            tolerance: self.gate_tolerance.unwrap_or(config.gate_tolerance),
            min_coverage: self.gate_min_coverage.unwrap_or(config.gate_min_coverage),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Registered models, their version counts and aliases
    List,
    /// One version: NAME (latest), NAME@VERSION or NAME@ALIAS
    Show { reference: String },
    /// Point an alias (default: production, through the gate) at a version
    Promote {
        name: String,
        #[arg(value_parser = clap::value_parser!(u32).range(1..=4000000000), value_name = "VERSION")]
        number: u32,
        #[arg(long, default_value = "production")]
        alias: String,
        /// Override the gate (needs --reason; recorded as forced)
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Move an alias back to the version it pointed at before its last promotion
    Rollback {
        name: String,
        #[arg(long, default_value = "production")]
        alias: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Every alias move of a model: when, who, why, from and to
    History { name: String },
    /// The model card (Markdown; --json for the data behind it)
    Card { reference: String },
    /// Delete NAME@VERSION (refused while an alias points at it)
    Delete { reference: String },
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

#[derive(Debug, Subcommand)]
pub enum StatsCommand {
    /// Run every supported vector of a reference file (e.g. ../shared/oracles/stats-vectors.json),
    /// write {"results": {"<id>": {...}}} and report which pass within their tolerances
    Verify {
        #[arg(long)]
        vectors: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Listeners in the simulated world
    #[arg(value_parser = clap::value_parser!(u32).range(1..=100000000), long, default_value_t = 2_000)]
    pub users: u32,
    /// Days of history before the experiments (the CUPED pre-period)
    #[arg(value_parser = clap::value_parser!(u32).range(1..=3650), long, default_value_t = 14)]
    pub days: u32,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// A/A experiments, each in its own domain
    #[arg(value_parser = clap::value_parser!(u32).range(0..=1000000), long, default_value_t = 200)]
    pub aa: u32,
    /// A/A experiments run at once (each on its own share of the listeners)
    #[arg(value_parser = clap::value_parser!(u32).range(1..=1000000), long, default_value_t = 20)]
    pub aa_per_round: u32,
    /// Factors of the weak model (ALS, two iterations) in the A/B control arm
    #[arg(value_parser = count(1, 1024), long, default_value_t = 12)]
    pub weak_factors: usize,
    /// A/B experiments (a weak model in control, a good one in treatment), one after another
    #[arg(value_parser = clap::value_parser!(u32).range(0..=1000000), long, default_value_t = 50)]
    pub ab: u32,
    /// Items per served list
    #[arg(value_parser = count(1, 1000), long, default_value_t = 10)]
    pub list: usize,
    /// Also simulate a day of each listener's own listening after exposure (noise the
    /// experiment has to see through)
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub organic: bool,
    /// Planted lifts for a power curve, comma-separated (e.g. 0.02,0.05): for each, `--ab`
    /// more experiments serve the same model in both arms, and every stream a treatment
    /// listener makes after exposure is doubled with this probability, so the true lift of
    /// streams per listener is exactly this
    #[arg(long, value_delimiter = ',', value_parser = lift)]
    pub lift: Vec<f64>,
    #[arg(value_parser = probability, long, default_value_t = 0.05)]
    pub alpha: f64,
}

/// Filters shared by the trace commands.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SpanFilterArgs {
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long)]
    pub operation: Option<String>,
    /// Request or response model
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub provider: Option<String>,
    /// ok, error or unset
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub session: Option<String>,
    /// Only root spans
    #[arg(long)]
    pub root: bool,
    /// Text in the prompt or completion (case-insensitive)
    #[arg(long)]
    pub text: Option<String>,
    /// Attribute equals, KEY=VALUE (repeatable), on the attributes no rule mapped
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub attributes: Vec<(String, String)>,
    #[arg(value_parser = non_negative_f64, long)]
    pub min_duration_ms: Option<f64>,
    #[arg(value_parser = non_negative_f64, long)]
    pub min_cost: Option<f64>,
}

#[derive(Debug, Subcommand)]
pub enum TracesCommand {
    /// Spans stored, per project
    Count {
        #[arg(long)]
        project: Option<String>,
    },
    /// The newest matching spans
    List {
        #[command(flatten)]
        filter: SpanFilterArgs,
        #[arg(value_parser = count(1, 100000), long, default_value_t = 20)]
        limit: usize,
        /// The previous page's last start_ns
        #[arg(long)]
        before_ns: Option<i64>,
    },
    /// One trace as a tree, with timings and content
    Show { trace_id: String },
    /// Check the span store without changing it: segment checksums, WAL records, ids once
    Verify,
    /// Repair damage the check found: keep every intact record, move each damaged file unchanged
    /// into <data>/quarantine/damaged/, and report exactly what was lost
    Repair,
    /// Recompute span costs with the current prices (built-in and `[telemetry] prices`) for a
    /// time range (provider-reported costs stay)
    RecomputeCosts {
        /// Epoch ms (default: the beginning)
        #[arg(long)]
        from_ms: Option<i64>,
        /// Epoch ms (default: now and later)
        #[arg(long)]
        to_ms: Option<i64>,
    },
    /// Count, error rate, latency quantiles, tokens and cost per group (and time bucket)
    Stats {
        #[command(flatten)]
        filter: SpanFilterArgs,
        /// model, service, user, operation, provider, status or none
        #[arg(long, default_value = "model")]
        group_by: String,
        /// Bucket width in minutes (0: one bucket)
        #[arg(value_parser = clap::value_parser!(i64).range(0..=525_600), long, default_value_t = 0)]
        bucket_minutes: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExperimentsCommand {
    /// Create a draft from a JSON definition ({"id", "hypothesis", "domain", "traffic",
    /// "variants": [{"name", "weight"}], "targeting", "treatments", "metrics", "planned_users"})
    Create { file: PathBuf },
    /// Replace a definition (a running experiment keeps its allocation; its traffic may rise)
    Update { file: PathBuf },
    /// Draft -> running
    Start { id: String },
    /// Running -> stopped
    Stop { id: String },
    /// Every experiment and its state
    List,
    /// One experiment's definition and state
    Show { id: String },
    /// Analyze an experiment on the event log: each exposed listener's metrics after their first
    /// exposure, the same metrics before it as CUPED covariates, SRM first, the ship decision
    Report {
        id: String,
        /// Days before exposure that make the covariate window
        #[arg(value_parser = clap::value_parser!(u32).range(0..=3650), long, default_value_t = 14)]
        pre_days: u32,
        #[arg(value_parser = probability, long, default_value_t = 0.05)]
        alpha: f64,
    },
    /// Experiments on a simulated service through the real serving path: A/A experiments (the
    /// false-positive rate) and A/B experiments of a weak against a good model (the power)
    Simulate(SimulateArgs),
    /// The running experiments a listener is in, and their variants
    Assign {
        user: String,
        #[arg(long, default_value = "ZZ")]
        country: String,
        #[arg(long, default_value = "other")]
        platform: String,
        #[arg(long, default_value = "unknown")]
        tier: String,
    },
}

/// A count flag within `lo..=hi`; clap reports the range and exits 2 for anything else.
fn count(lo: u64, hi: u64) -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(lo..=hi)
}

/// Parses a finite float and checks it against `ok`, naming the allowed range when it fails.
fn float_in<T>(raw: &str, ok: impl Fn(f64) -> bool, range: &str) -> Result<T, String>
where
    T: std::str::FromStr + Into<f64> + Copy,
{
    let value: T = raw
        .trim()
        .parse()
        .map_err(|_| format!("`{raw}` is not a number (expected {range})"))?;
    let x: f64 = value.into();
    if x.is_finite() && ok(x) {
        Ok(value)
    } else {
        Err(format!("{raw} is not in {range}"))
    }
}

fn positive_f32(raw: &str) -> Result<f32, String> {
    float_in(raw, |x| x > 0.0, "(0, inf)")
}

fn non_negative_f32(raw: &str) -> Result<f32, String> {
    float_in(raw, |x| x >= 0.0, "[0, inf)")
}

fn unit_f32(raw: &str) -> Result<f32, String> {
    float_in(raw, |x| (0.0..=1.0).contains(&x), "[0, 1]")
}

fn positive_f64(raw: &str) -> Result<f64, String> {
    float_in(raw, |x| x > 0.0, "(0, inf)")
}

fn non_negative_f64(raw: &str) -> Result<f64, String> {
    float_in(raw, |x| x >= 0.0, "[0, inf)")
}

fn unit_f64(raw: &str) -> Result<f64, String> {
    float_in(raw, |x| (0.0..=1.0).contains(&x), "[0, 1]")
}

/// A significance level: strictly between 0 and 1.
fn shift_at(s: &str) -> Result<encore_sim::ShiftAt, String> {
    encore_sim::ShiftAt::parse(s).map_err(|e| e.to_string())
}

fn fault_rate(raw: &str) -> Result<f64, String> {
    float_in(raw, |x| (0.0..0.5).contains(&x), "[0, 0.5)")
}

fn lift(raw: &str) -> Result<f64, String> {
    float_in(raw, |x| x > 0.0 && x <= 1.0, "(0, 1]")
}

fn probability(raw: &str) -> Result<f64, String> {
    float_in(raw, |x| x > 0.0 && x < 1.0, "(0, 1)")
}
