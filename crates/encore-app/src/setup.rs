//! The parts every node and command builds from the configuration and the data directory: the
//! outbound client and its allow-list, the data directory's keys, the price table, the span
//! normalizer, the catalog as features and grounding read it, the retrieval choice.

use crate::AppError;
use encore_config::{Config, ServerConfig, TelemetryConfig};
use encore_evals::catalog::CatalogIndex;
use encore_evals::judge::{JudgeConfig, Tracer};
use encore_evals::ops::Delivery;
use encore_evals::spec::Context;
use encore_http::outbound::{Allow, Options, Outbound, Retry};
use encore_ingest::catalog::{CatalogStore, ItemInfo};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// PEM certificates of `[server] ca_file`, trusted for outbound https besides Mozilla's roots.
pub fn extra_roots(c: &ServerConfig) -> Result<Option<Vec<u8>>, AppError> {
    let f = &c.ca_file;
    if f.is_empty() {
        return Ok(None);
    }
    std::fs::read(f).map(Some).map_err(|e| {
        AppError::invalid(format!(
            "[server] ca_file {f}: {e} (name a PEM file of CA certificates, or set ca_file = \"\")"
        ))
    })
}

/// `[server] webhook_allow`: where webhooks and API-given task endpoints may send.
pub fn webhook_allow(c: &ServerConfig) -> Result<Allow, AppError> {
    Allow::parse(&c.webhook_allow).map_err(|e| {
        AppError::invalid(format!(
            "[server] webhook_allow: {e} (list \"*\", host names, \"*.suffix\", IP addresses or \
             CIDR networks)"
        ))
    })
}

/// The outbound client of webhooks: `[server] webhook_allow`, `ca_file`, `timeout`.
pub fn webhook_client(c: &ServerConfig, timeout: Duration) -> Result<Outbound, AppError> {
    Outbound::new(Options {
        timeout,
        extra_roots_pem: extra_roots(c)?,
        allow: webhook_allow(c)?,
        ..Default::default()
    })
    .map_err(|e| AppError::invalid(format!("outbound client: {e} (check [server] ca_file)")))
}

/// The webhook signing key: `[server] webhook_secret`, or a random one kept in
/// `<data dir>/webhook-secret`, made on first use.
pub fn webhook_secret(c: &ServerConfig, root: &Path) -> Result<Arc<[u8]>, AppError> {
    if !c.webhook_secret.is_empty() {
        return Ok(c.webhook_secret.as_bytes().into());
    }
    local_key(
        root,
        "webhook-secret",
        "webhook signing key (X-Encore-Signature)",
    )
}

/// The key identifiers that carry personal data are hashed under (`<data dir>/privacy-key`).
pub fn privacy_key(root: &Path) -> Result<Arc<[u8]>, AppError> {
    local_key(
        root,
        "privacy-key",
        "privacy key (hashes of personal identifiers)",
    )
}

/// A random key kept (mode 0600, written whole or not at all) in `<root>/<file>`, made on
/// first use.
fn local_key(root: &Path, file: &str, what: &str) -> Result<Arc<[u8]>, AppError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = root.join(file);
    let failed = |e: std::io::Error| {
        AppError::new(
            encore_core::ErrorCode::FailedPrecondition,
            format!(
                "{what} {}: {e} (check the data directory's permissions)",
                path.display()
            ),
        )
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().as_bytes().into()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(e)),
    }
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| failed(std::io::Error::other(e.to_string())))?;
    let secret: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = root.join(format!("{file}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(failed)?;
    f.write_all(secret.as_bytes()).map_err(failed)?;
    f.sync_all().map_err(failed)?;
    std::fs::rename(&tmp, &path).map_err(failed)?;
    tracing::info!(path = %path.display(), "made a {what}");
    Ok(secret.as_bytes().into())
}

/// The built-in price table (LiteLLM snapshot) with `[telemetry] prices` winning over it; its
/// version says whether config changed it.
pub fn price_table(c: &TelemetryConfig) -> encore_telemetry::cost::PriceTable {
    let mut table = encore_telemetry::cost::PriceTable::default();
    if c.prices.is_empty() {
        return table;
    }
    for p in &c.prices {
        table.set(encore_telemetry::cost::Price {
            model: p.model.clone(),
            provider: String::new(),
            input: p.input,
            cached_input: p.cached_input,
            cache_write: p.cache_write,
            output: p.output,
            reasoning: p.reasoning,
            long_context_threshold: p.long_context_threshold,
            long_input: p.long_input,
            long_output: p.long_output,
        });
    }
    // the version names the overrides, so recomputed costs say which prices they used
    let digest = encore_experiments::assignment::hash(
        "prices",
        &serde_json::to_string(&c.prices).unwrap_or_default(),
    );
    table.version = format!("{}+config-{:08x}", table.version, digest >> 32);
    table
}

/// `[telemetry]` as the normalizer of incoming spans.
pub fn normalizer(
    c: &TelemetryConfig,
    root: &Path,
) -> Result<encore_telemetry::Normalizer, AppError> {
    let redactor = encore_telemetry::Redactor::new(&c.redact_patterns).map_err(|e| {
        AppError::invalid(format!(
            "bad value for `telemetry.redact_patterns`: {e} (each pattern is a regular \
             expression, Rust regex syntax)"
        ))
    })?;
    Ok(encore_telemetry::Normalizer {
        redactor,
        content: c.content,
        user_id_key: (!c.user_id_key.is_empty()).then(|| c.user_id_key.as_bytes().to_vec()),
        id_key: privacy_key(root)?.to_vec(),
        content_by_service: c
            .content_by_service
            .iter()
            .map(|(service, p)| (service.clone(), *p))
            .collect(),
        prices: price_table(c),
        sampling: encore_telemetry::otlp::Sampling {
            rate: c.sample_rate,
            keep_slower_than_ms: c.keep_slower_than_ms,
        },
    })
}

/// The catalog's items (tracks, artists, generic items) with their titles and artists; empty,
/// with a warning, when the catalog cannot be read.
pub fn catalog_items(catalog: &CatalogStore) -> HashMap<String, ItemInfo> {
    catalog.item_info().unwrap_or_else(|e| {
        tracing::warn!("features and catalog grounding without the catalog: {e}");
        HashMap::new()
    })
}

/// Each catalog item's artist.
pub fn artists(items: &HashMap<String, ItemInfo>) -> HashMap<String, String> {
    items
        .iter()
        .filter_map(|(id, i)| {
            i.artist_id
                .as_ref()
                .filter(|a| *a != id)
                .map(|a| (id.clone(), a.clone()))
        })
        .collect()
}

/// The catalog as catalog grounding sees it: artists by name, tracks by title and artist.
pub fn catalog_index(info: &HashMap<String, ItemInfo>) -> Option<Arc<CatalogIndex>> {
    if info.is_empty() {
        return None;
    }
    let mut idx = CatalogIndex::default();
    for (id, i) in info {
        if i.artist_id.as_deref() == Some(id) {
            idx.add_artist(id, &i.title);
        }
    }
    for (id, i) in info {
        match i.artist_id.as_deref() {
            Some(a) if a != id => {
                let by = info.get(a).map_or("", |x| x.title.as_str());
                idx.add_track(id, &i.title, by);
            }
            Some(_) => {}
            None => idx.add_track(id, &i.title, ""),
        }
    }
    Some(Arc::new(idx))
}

/// What evaluators need: the catalog, the judge endpoint from `[evals.judge]`, prices.
pub fn eval_context(
    config: &Config,
    catalog: Option<Arc<CatalogIndex>>,
    tracer: Option<Tracer>,
) -> Result<Context, AppError> {
    let j = &config.evals.judge;
    let extra_roots_pem = extra_roots(&config.server)?;
    Ok(Context {
        catalog,
        judge: (!j.base_url.is_empty()).then(|| JudgeConfig {
            extra_roots_pem,
            allow: None,
            ..j.clone()
        }),
        prices: price_table(&config.telemetry),
        tracer,
        destinations: None,
    })
}

/// How alert notifications are sent: `[evals]` timeout and retries, signed.
pub fn alert_delivery(config: &Config, root: &Path) -> Result<Delivery, AppError> {
    let c = &config.evals;
    Ok(Delivery {
        client: webhook_client(
            &config.server,
            Duration::from_millis(c.webhook_timeout_ms.max(1)),
        )?,
        secret: Some(webhook_secret(&config.server, root)?),
        retry: Retry {
            attempts: c.webhook_retries + 1,
            backoff: Duration::from_millis(200),
            max_wait: Duration::from_secs(60),
        },
    })
}

/// `[serving] retrieval` as the index's choice.
pub fn retrieval(sc: &encore_config::ServingConfig) -> encore_index::Choice {
    match sc.retrieval {
        encore_config::Retrieval::Exact => encore_index::Choice::Exact,
        encore_config::Retrieval::Hnsw => encore_index::Choice::Hnsw(Default::default()),
        encore_config::Retrieval::Auto => encore_index::Choice::Auto {
            threshold: sc.hnsw_threshold as usize,
        },
    }
}
