//! `encore-server`: the HTTP API. One module per resource; handlers unpack the request, call one
//! operation of the application layer (`encore-app`) or a domain crate, and map its error to a
//! status in one place ([`error`]). No module here starts a thread or joins two domains.
//!
//! ```no_run
//! # async fn run(ingestor: std::sync::Arc<encore_ingest::Ingestor>) -> std::io::Result<()> {
//! let state = encore_server::AppState::new(ingestor, encore_server::Limits::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7878").await?;
//! encore_server::serve(listener, state, std::future::pending()).await
//! # }
//! ```

/// the blocking HTTP client of encore's tools and tests
pub use encore_http as client;
pub mod auth;
pub mod error;
pub mod evals;
mod events;
pub mod experiments;
pub mod features;
mod health;
pub mod keys;
mod meters;
pub mod metrics;
mod models;
pub mod monitors;
pub mod openapi;
pub mod privacy;
pub mod recs;
mod state;
pub mod tls;
pub mod traces;

pub use state::{AppState, Limits, PrivacyAccess, RegistryAccess};

use axum::Router;
use std::future::Future;
use std::sync::Arc;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::routes())
        .merge(events::routes())
        .merge(models::routes())
        .merge(recs::routes())
        .merge(experiments::routes())
        .merge(traces::routes())
        .merge(evals::routes())
        .merge(features::routes())
        .merge(auth::routes())
        .merge(privacy::routes())
        .merge(monitors::routes())
        .route("/metrics", axum::routing::get(metrics::render))
        .route("/openapi.json", axum::routing::get(openapi::openapi_json))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(error::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn(error::identity_only))
        .layer(axum::middleware::from_fn(error::json_by_default))
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(state)
}

/// Serves `state` over TLS (`config`, see [`tls::server_config`]) on `listener` until
/// `shutdown` completes; in-flight requests finish first.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: AppState,
    config: Arc<tokio_rustls::rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // tap_io: the client's address reaches handlers as ConnectInfo<SocketAddr>, as over TCP
    let listener = tls::TlsListener::new(listener, config)?.tap_io(|_| {});
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `state` on `listener` until `shutdown` completes; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
