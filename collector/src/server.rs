//! Assembles and runs a collector: store, writer, gRPC services (ingest,
//! query, health, reflection) behind TLS and tokens, `/metrics`, and in
//! standalone mode the host sampler; then shuts all of it down in order.
//!
//! Shutdown order: health says NOT_SERVING, the sampler stops, every agent
//! stream acks what committed and ends with UNAVAILABLE, the listeners
//! close, and last the writer stores what is queued and checkpoints.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;

use crate::api::unzstd::Unzstd;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use upid::wire::v1::agent_service_server::AgentServiceServer;
use upid::wire::v1::query_service_server::QueryServiceServer;

use crate::analysis::Analyzer;
use crate::api::agent::{AgentApi, AgentApiConfig};
use crate::api::query::QueryApi;
use crate::api::{ConnectedAgents, ServerFacts};
use crate::auth::{Authenticator, Role, Tokens, TokensError};
use crate::config::{Mode, Settings};
use crate::metrics::{Gauges, Metrics};
use crate::report::schedule::ReportTask;
use crate::standalone::{HostSampler, StandaloneError};
use crate::store::{Retention, Rollup, Store, StoreError, Writer, WriterError, WriterHandle};
use crate::updates::UpdateChecker;

/// How long shutdown waits for connections to finish before closing them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Why the collector could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer could not start or stop.
    #[error(transparent)]
    Writer(#[from] WriterError),
    /// The tokens file is unusable.
    #[error(transparent)]
    Tokens(#[from] TokensError),
    /// A certificate or key file could not be read.
    #[error("reading {what} {path}: {source}")]
    ReadPem {
        /// Which file (server certificate, key, client CA).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The TLS settings were refused (bad PEM, key not matching...).
    #[error("TLS configuration: {0}")]
    Tls(tonic::transport::Error),
    /// An address could not be bound.
    #[error(
        "listening for {what} on {addr}: {source} (is another collector running? pick another address with --{flag})"
    )]
    Bind {
        /// gRPC or metrics.
        what: &'static str,
        /// The flag that sets it.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Server reflection could not be built from the descriptors.
    #[error("building gRPC reflection: {0}")]
    Reflection(String),
    /// The query service could not start.
    #[error("starting the query service: {0}")]
    Query(String),
    /// Standalone sampling could not start.
    #[error(transparent)]
    Standalone(#[from] StandaloneError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Serve(tonic::transport::Error),
    /// The metrics server failed.
    #[error("metrics server: {0}")]
    Metrics(std::io::Error),
}

/// Where a running collector can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// Bound gRPC address.
    pub grpc: SocketAddr,
    /// Bound `/metrics` address, when enabled.
    pub metrics: Option<SocketAddr>,
    /// The store file.
    pub store: PathBuf,
    /// Node name sampled (standalone only).
    pub node: Option<String>,
}

impl std::fmt::Display for Ready {
    /// The one line tests and scripts wait for.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let metrics = self
            .metrics
            .map_or_else(|| "off".to_owned(), |a| a.to_string());
        write!(
            f,
            "upid-collector: ready grpc={} metrics={} store={}",
            self.grpc,
            metrics,
            self.store.display()
        )
    }
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|source| ServerError::ReadPem {
        what,
        path: path.to_owned(),
        source,
    })
}

async fn bind(
    what: &'static str,
    flag: &'static str,
    addr: SocketAddr,
) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            what,
            flag,
            addr,
            source,
        })
}

fn unix_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[derive(Clone)]
struct MetricsState {
    metrics: Arc<Metrics>,
    writer: WriterHandle,
    connected: Arc<ConnectedAgents>,
    store: PathBuf,
    updates: Option<Arc<UpdateChecker>>,
}

async fn render_metrics(State(state): State<MetricsState>) -> impl IntoResponse {
    let text = state.metrics.render(Gauges {
        writer: state.writer.stats(),
        writer_queued: state.writer.queued(),
        store_bytes: crate::store::store_bytes(&state.store),
        agents_connected: state.connected.count(),
        registry: state.updates.as_ref().map(|u| u.registry().stats()),
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// Runs a collector with `settings` until `shutdown` completes; calls
/// `on_ready` once everything listens.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(&Ready),
) -> Result<(), ServerError> {
    // Everything that can fail on bad settings fails before listening.
    let tokens = match &settings.tokens_file {
        Some(path) => Some(Arc::new(Tokens::load(path)?)),
        None => None,
    };
    let tls = match &settings.tls {
        Some(files) => {
            let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
                read_pem("the server certificate", &files.cert)?,
                read_pem("the server key", &files.key)?,
            ));
            if let Some(ca) = &files.client_ca {
                config =
                    config.client_ca_root(Certificate::from_pem(read_pem("the client CA", ca)?));
            }
            Some(config)
        }
        None => None,
    };
    let host = match (settings.mode, &settings.sampling) {
        (Mode::Standalone, Some(sampling)) => Some(HostSampler::new(
            sampling,
            // The kernel log's cursor lives beside the store.
            settings.store.parent().map(|d| {
                if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                }
            }),
        )?),
        _ => None,
    };

    let mut store = Store::open(&settings.store)?;
    // The hourly summary's CPU histogram is kept for one half-life; a
    // configured other one is rebuilt once here, so rightsizing reads the
    // summary instead of every usage row.
    #[allow(clippy::cast_precision_loss)]
    let half_life_s = settings.analysis.rightsize.cpu_half_life_s as f64;
    if store.set_usage_summary_cpu_half_life(half_life_s)? {
        tracing::info!(
            half_life_s,
            "usage summary CPU histogram rebuilt for the configured half-life"
        );
    }
    let reader = store.reader()?;
    let report_reader = reader
        .try_clone()
        .map_err(|e| ServerError::Query(format!("a store reader for reports: {e}")))?;
    let rollup = Arc::new(std::sync::Mutex::new(Rollup::new(&store)?));
    let retention = if settings.retention.enabled {
        Some(Retention::new(&store, settings.retention.clone())?)
    } else {
        tracing::info!("retention is off: nothing is ever dropped");
        None
    };
    let writer = Writer::spawn(store)?;

    let metrics = Arc::new(Metrics::with_writer_durations(writer.durations()));
    if let Some(r) = &retention {
        metrics
            .retention
            .set_budget_bytes(r.settings().disk_budget_bytes);
    }
    let connected = Arc::new(ConnectedAgents::default());
    let facts = ServerFacts {
        started_unix_ns: unix_now_ns(),
        store_path: settings.store.display().to_string(),
        tls: tls.is_some(),
        auth_required: tokens.is_some(),
        connected: connected.clone(),
    };
    let (stop_tx, stop_rx) = watch::channel(false);

    let agent_api = AgentApi::new(
        writer.clone(),
        AgentApiConfig {
            rate_per_s: settings.agent_rate_limit_per_s,
            burst: settings.agent_rate_burst,
            ..AgentApiConfig::default()
        },
        metrics.clone(),
        connected.clone(),
        stop_rx.clone(),
    );
    let query_metrics = metrics.clone();
    let query_api = QueryApi::new(reader, facts)
        .map_err(|e| ServerError::Query(e.to_string()))?
        .with_observer(Arc::new(move |method, took| {
            query_metrics.observe_query(method, took)
        }))
        .with_analysis(
            Analyzer::new(settings.analysis.clone(), settings.pricing.clone()),
            Some(rollup.clone()),
        )
        .with_rollout_window_s(settings.updates.rollout_window_s)
        .with_export(
            export_scratch_dir(&settings.store),
            settings.max_message_bytes,
        );
    let update_checker = if settings.updates.enabled {
        let checker = UpdateChecker::new(&settings.updates)
            .map_err(|e| ServerError::Query(format!("image update checks: {e}")))?;
        Some(Arc::new(checker))
    } else {
        None
    };
    let query_api = match &update_checker {
        Some(checker) => query_api.with_updates(checker.clone()),
        None => query_api,
    };
    let reports_task = if settings.reports.enabled {
        let task = ReportTask {
            dir: settings.reports.dir_for(&settings.store),
            tables: settings.reports.table_set().map_err(ServerError::Query)?,
            settings: settings.reports.clone(),
            reader: Arc::new(report_reader),
            analyzer: Arc::new(Analyzer::new(
                settings.analysis.clone(),
                settings.pricing.clone(),
            )),
            updates: update_checker.clone(),
            rollup: Some(rollup.clone()),
            metrics: metrics.reports.clone(),
        };
        Some(task.spawn(stop_rx.clone()))
    } else {
        tracing::info!("periodic Parquet reports off (reports.enabled is false)");
        None
    };
    let retention_task = retention.map(|retention| {
        let every = Duration::from_secs(retention.settings().interval_s);
        tokio::spawn(run_retention(
            rollup.clone(),
            retention,
            every,
            metrics.clone(),
            stop_rx.clone(),
        ))
    });
    let rollup_task = tokio::spawn(run_rollups(
        rollup,
        ROLLUP_EVERY,
        metrics.clone(),
        stop_rx.clone(),
    ));
    let max = settings.max_message_bytes;
    let agent_service = InterceptedService::new(
        // Batches come zstd-compressed; the answers (Welcome, Acks) are a
        // few bytes and go out plain: tonic makes a new zstd context for
        // every message it compresses, which cost more than the ack.
        Unzstd::new(
            AgentServiceServer::new(agent_api.clone())
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max),
            max,
        ),
        Authenticator::new(tokens.clone(), Role::Agent, metrics.auth_failures.clone()),
    );
    let query_service = InterceptedService::new(
        QueryServiceServer::new(query_api)
            .accept_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        Authenticator::new(tokens.clone(), Role::Query, metrics.auth_failures.clone()),
    );
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in ["upid.v1.AgentService", "upid.v1.QueryService"] {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(upid::wire::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(upid::wire::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Reflection(e.to_string()))?;

    let grpc_listener = bind("gRPC", "listen", settings.listen).await?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|source| ServerError::Bind {
            what: "gRPC",
            flag: "listen",
            addr: settings.listen,
            source,
        })?;
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(bind("/metrics", "metrics-listen", addr).await?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());

    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(ServerError::Tls)?;
    }
    let router = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(agent_service)
        .add_service(query_service);

    // One signal fans out to every part.
    let mut grpc_stop = stop_rx.clone();
    let grpc = tokio::spawn(router.serve_with_incoming_shutdown(
        TcpListenerStream::new(grpc_listener),
        async move {
            let _ = grpc_stop.wait_for(|stop| *stop).await;
        },
    ));
    let metrics_server = metrics_listener.map(|listener| {
        let app = Router::new()
            .route("/metrics", get(render_metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .with_state(MetricsState {
                metrics: metrics.clone(),
                writer: writer.clone(),
                connected: connected.clone(),
                store: settings.store.clone(),
                updates: update_checker.clone(),
            });
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                })
                .await
        })
    });
    let node = host.as_ref().map(|h| h.node_name().to_owned());
    let sampling =
        host.map(|h| tokio::spawn(h.run(writer.clone(), connected.clone(), stop_rx.clone())));
    let housekeeping = {
        let agent_api = agent_api.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every.tick() => agent_api.forget_quiet_agents(),
                    _ = stop.wait_for(|stop| *stop) => return,
                }
            }
        })
    };

    on_ready(&Ready {
        grpc: grpc_addr,
        metrics: metrics_addr,
        store: settings.store.clone(),
        node,
    });

    shutdown.await;
    tracing::info!("shutting down: ending agent streams, then checkpointing the store");
    for name in ["upid.v1.AgentService", "upid.v1.QueryService"] {
        health
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
    let _ = stop_tx.send(true);
    let mut result = Ok(());
    if let Some(sampling) = sampling {
        match sampling.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(ServerError::Standalone(e)),
            Err(e) => tracing::error!(error = %e, "the sampling task failed"),
        }
    }
    match tokio::time::timeout(SHUTDOWN_GRACE, grpc).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => result = result.and(Err(ServerError::Serve(e))),
        Ok(Err(e)) => tracing::error!(error = %e, "the gRPC server task failed"),
        Err(_) => tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them"),
    }
    if let Some(server) = metrics_server {
        match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
            Ok(Ok(Err(e))) => result = result.and(Err(ServerError::Metrics(e))),
            Ok(Err(e)) => tracing::error!(error = %e, "the metrics server task failed"),
            _ => {}
        }
    }
    housekeeping.abort();
    if let Some(task) = reports_task
        && tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err()
    {
        tracing::warn!(
            "a report was still being written after {SHUTDOWN_GRACE:?}; stopped waiting"
        );
    }
    if let Err(e) = rollup_task.await {
        tracing::error!(error = %e, "the rollup task failed");
    }
    if let Some(task) = retention_task
        && let Err(e) = task.await
    {
        tracing::error!(error = %e, "the retention task failed");
    }
    writer.shutdown().await?;
    tracing::info!("store checkpointed and closed");
    result
}

/// Where the `Export` RPC writes its files before streaming them: the
/// store's directory (a volume with room), else the system's temporary
/// directory.
fn export_scratch_dir(store: &Path) -> PathBuf {
    store
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
}

/// How often agent samples are rolled up into `usage` (analysis also rolls
/// up before it reads).
pub const ROLLUP_EVERY: Duration = Duration::from_secs(60);

/// Rolls up every `every` until stopped, then once more, so `usage` holds
/// every stored sample when the collector exits.
async fn run_rollups(
    rollup: Arc<std::sync::Mutex<Rollup>>,
    every: Duration,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let r = rollup.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut rollup = r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Timed once the lock is held: retention's own rollup is not
            // this one's.
            let started = std::time::Instant::now();
            rollup.run().map(|stats| (stats, started.elapsed()))
        })
        .await;
        match &done {
            Ok(Ok((stats, took))) => {
                metrics.rollup_duration.observe(*took);
                metrics
                    .rollup_rows
                    .fetch_add(stats.rows, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(Err(_)) => {
                metrics
                    .rollup_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(_) => {}
        }
        match done.map(|r| r.map(|(stats, _)| stats)) {
            Ok(Ok(stats)) if stats.rows > 0 => {
                tracing::debug!(
                    nodes = stats.nodes,
                    rows = stats.rows,
                    "rolled up samples into usage"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "rollup failed; the next one retries"),
            Err(e) => tracing::error!(error = %e, "the rollup task failed"),
        }
        if stopping {
            return;
        }
    }
}

/// Runs retention at start and every `every` until stopped. Each run rolls
/// up first and holds the rollup's lock throughout, so retention never
/// drops samples the rollup is about to read and the two never write the
/// same rows at once (analysis, which rolls up before it reads, waits for
/// a running retention).
async fn run_retention(
    rollup: Arc<std::sync::Mutex<Rollup>>,
    mut retention: Retention,
    every: Duration,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let r = rollup.clone();
        let done = tokio::task::spawn_blocking(move || {
            let result = {
                let mut rollup = r.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Err(e) = rollup.run() {
                    tracing::warn!(error = %e, "rollup before retention failed; retention keeps what it has not rolled up");
                }
                retention.run()
            };
            (retention, result)
        })
        .await;
        match done {
            Ok((back, result)) => {
                retention = back;
                match result {
                    Ok(report) => metrics.retention.record(&report),
                    Err(e) => {
                        metrics.retention.record_failure();
                        tracing::warn!(error = %e, "retention failed; the next run retries");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the retention task failed; retention stops");
                return;
            }
        }
    }
}
