//! `upid.v1.QueryService`: what `upid` (and any gRPC client) asks about the
//! stored history, answered from the store's read side.
//!
//! [`QueryApi`] holds a small pool of [`Reader`]s (one DuckDB connection
//! each) and runs every query on tokio's blocking threads, so queries run in
//! parallel and never block the async runtime. Store errors become gRPC
//! statuses in one place (`status.rs`): an unknown container is `NOT_FOUND`
//! naming the id, an ambiguous prefix or a bad range/step `INVALID_ARGUMENT`
//! saying what is allowed, a DuckDB failure `INTERNAL`.
//!
//! Containers carry their inventory (name, image, state, workload...) where
//! an agent sent one; workloads are the owners inventory names, else what
//! the cgroup identity tells (see `workloads.rs`).
//!
//! Wiring it into a server:
//!
//! ```ignore
//! let api = QueryApi::new(store.reader()?, facts)?
//!     .with_observer(Arc::new(move |method, took| metrics.observe_query(method, took)));
//! Server::builder().add_service(api.into_server())...
//! ```

mod convert;
pub mod export;
mod pool;
mod status;
pub(crate) mod workloads;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::{Request, Response, Status};
use upid::wire::v1::query_service_server::{QueryService, QueryServiceServer};
use upid::wire::v1::{
    ContainerDetail, CostRequest, CostResponse, ExportRequest, GetContainerRequest,
    GetContainerSeriesRequest, GetContainerSeriesResponse, GetServerInfoRequest, IdleRequest,
    IdleResponse, ListContainersRequest, ListContainersResponse, ListEventsRequest,
    ListEventsResponse, ListNodesRequest, ListNodesResponse, ListRolloutsRequest,
    ListRolloutsResponse, ListUpdateEventsRequest, ListUpdateEventsResponse, ListUpdatesRequest,
    ListUpdatesResponse, ListWorkloadsRequest, ListWorkloadsResponse, RecordUpdateEventsRequest,
    RecordUpdateEventsResponse, RightsizeRequest, RightsizeResponse, ServerInfo, TopRequest,
    TopResponse,
};

use self::pool::ReaderPool;
use super::ServerFacts;
use crate::analysis::{AnalysisError, Analyzer};
use crate::auth::{Principal, Role};
use crate::store::{EventFilter, QueryError, Reader, Rollup};
use crate::updates::UpdateChecker;
use crate::updates::settings::DEFAULT_ROLLOUT_WINDOW_S;

/// Readers (DuckDB connections) a [`QueryApi`] gets by default: queries
/// running at once; more wait for a free one.
pub const DEFAULT_QUERY_READERS: usize = 4;

/// Called after every query with the RPC's method name (as in the proto,
/// e.g. `"ListContainers"`) and how long it took, waiting for a free reader
/// included, whether it succeeded or not. For the
/// `upid_collector_query_duration_seconds{method}` histogram.
pub type QueryObserver = Arc<dyn Fn(&'static str, Duration) + Send + Sync>;

/// The collector's clock in Unix ns: what "now" is for gone containers,
/// `Top` and `GetServerInfo`.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Message for a `GetContainer`/`GetContainerSeries` without an id.
const ID_REQUIRED: &str =
    "id is required: give a full or unique-prefix container id, or <node>:<cgroup path>";

/// `upid.v1.QueryService` over the store's read side.
pub struct QueryApi {
    pool: Arc<ReaderPool>,
    facts: ServerFacts,
    observer: Option<QueryObserver>,
    clock: Clock,
    analyzer: Arc<Analyzer>,
    rollup: Option<Arc<std::sync::Mutex<Rollup>>>,
    updates: Option<Arc<UpdateChecker>>,
    rollout_window_s: u64,
    export_scratch_dir: PathBuf,
    export_chunk_bytes: usize,
}

impl std::fmt::Debug for QueryApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryApi")
            .field("pool", &self.pool)
            .field("facts", &self.facts)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl QueryApi {
    /// A query service answering from `reader` and clones of it,
    /// [`DEFAULT_QUERY_READERS`] connections in all. Fails only when DuckDB
    /// cannot open another connection.
    pub fn new(reader: Reader, facts: ServerFacts) -> Result<QueryApi, QueryError> {
        QueryApi::with_readers(reader, facts, DEFAULT_QUERY_READERS)
    }

    /// As [`QueryApi::new`] with `readers` connections (at least one): at
    /// most that many queries run at once.
    pub fn with_readers(
        reader: Reader,
        facts: ServerFacts,
        readers: usize,
    ) -> Result<QueryApi, QueryError> {
        Ok(QueryApi {
            pool: Arc::new(ReaderPool::new(reader, readers)?),
            facts,
            observer: None,
            clock: Arc::new(crate::store::unix_now_ns),
            analyzer: Arc::new(Analyzer::default()),
            rollup: None,
            updates: None,
            rollout_window_s: DEFAULT_ROLLOUT_WINDOW_S,
            export_scratch_dir: std::env::temp_dir(),
            export_chunk_bytes: export::MAX_CHUNK_BYTES,
        })
    }

    /// Answers `Rightsize`, `ListIdle` and `GetCost` with `analyzer`; when
    /// `rollup` is given, agent samples received so far are rolled up into
    /// `usage` before each analysis, so answers include the latest minute.
    #[must_use]
    pub fn with_analysis(
        mut self,
        analyzer: Analyzer,
        rollup: Option<Arc<std::sync::Mutex<Rollup>>>,
    ) -> QueryApi {
        self.analyzer = Arc::new(analyzer);
        self.rollup = rollup;
        self
    }

    /// Rolls agent samples received so far up into `usage` (when a rollup
    /// was given), so a query over `usage` includes the latest minute.
    async fn roll_up(&self, method: &'static str) -> Result<(), Status> {
        if let Some(rollup) = self.rollup.clone() {
            let done = tokio::task::spawn_blocking(move || {
                let mut r = rollup
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                r.run()
            })
            .await
            .map_err(|e| Status::internal(format!("{method}: rollup task: {e}")))?;
            if let Err(e) = done {
                // Stale minutes are better than no answer; the next
                // rollup retries.
                tracing::warn!(method, error = %e, "rollup before analysis failed");
            }
        }
        Ok(())
    }

    /// Runs an analysis on a reader after bringing `usage` up to date.
    async fn analyse<T: Send + 'static>(
        &self,
        method: &'static str,
        f: impl FnOnce(&Analyzer, &Reader, i64) -> Result<T, AnalysisError> + Send + 'static,
    ) -> Result<T, Status> {
        self.roll_up(method).await?;
        let analyzer = self.analyzer.clone();
        let at = self.now();
        self.pool
            .run(method, move |reader| {
                f(&analyzer, reader, at).map_err(|e| match e {
                    AnalysisError::Query(q) => q,
                    AnalysisError::InvalidArgument(message) => {
                        QueryError::InvalidArgument { message }
                    }
                })
            })
            .await
    }

    /// Answers `ListUpdates` with `checker` (without one, `ListUpdates` is
    /// FAILED_PRECONDITION saying update checks are off).
    #[must_use]
    pub fn with_updates(mut self, checker: Arc<UpdateChecker>) -> QueryApi {
        self.updates = Some(checker);
        self
    }

    /// Judges `ListRollouts` over windows of `window_s` seconds when the
    /// request does not say (the collector's `updates.rollout_window_s`;
    /// default [`DEFAULT_ROLLOUT_WINDOW_S`]).
    #[must_use]
    pub fn with_rollout_window_s(mut self, window_s: u64) -> QueryApi {
        self.rollout_window_s = window_s;
        self
    }

    /// `Export` writes its files in a scratch directory under
    /// `scratch_dir` (default: the system's temporary directory; stale ones
    /// a crash left there are removed now) and sends data chunks that fit
    /// in `max_message_bytes` (at most 1 MiB).
    #[must_use]
    pub fn with_export(mut self, scratch_dir: PathBuf, max_message_bytes: usize) -> QueryApi {
        export::remove_stale_scratch(&scratch_dir);
        self.export_scratch_dir = scratch_dir;
        self.export_chunk_bytes = max_message_bytes
            .saturating_sub(4096)
            .clamp(1024, export::MAX_CHUNK_BYTES);
        self
    }

    /// Reports every query's duration to `observer`.
    #[must_use]
    pub fn with_observer(mut self, observer: QueryObserver) -> QueryApi {
        self.observer = Some(observer);
        self
    }

    /// Uses `clock` instead of the system clock (tests over stored history
    /// at fixed times).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> QueryApi {
        self.clock = clock;
        self
    }

    /// The tonic service to add to a server. Message size limits and
    /// compression are the caller's to set on it.
    pub fn into_server(self) -> QueryServiceServer<QueryApi> {
        QueryServiceServer::new(self)
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Runs one RPC, reports its duration to the observer and logs refusals.
    async fn observed<T>(
        &self,
        method: &'static str,
        rpc: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = rpc.await;
        let took = started.elapsed();
        if let Some(observer) = &self.observer {
            observer(method, took);
        }
        match &result {
            Ok(_) => tracing::debug!(method, ?took, "query answered"),
            Err(status) => tracing::debug!(
                method,
                ?took,
                code = ?status.code(),
                detail = status.message(),
                "query refused"
            ),
        }
        result.map(Response::new)
    }
}

/// `Some(s)` unless `s` is empty (proto3's "not set").
fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl QueryService for QueryApi {
    type ExportStream = export::ExportStream;

    async fn export(
        &self,
        request: Request<ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let now = self.now();
        let checked = match export::check(request.get_ref(), now) {
            Ok(c) => c,
            Err(status) => {
                if let Some(observer) = &self.observer {
                    observer("Export", Duration::ZERO);
                }
                tracing::debug!(
                    method = "Export",
                    detail = status.message(),
                    "query refused"
                );
                return Err(status);
            }
        };
        let parts = export::ExportParts {
            pool: self.pool.clone(),
            analyzer: self.analyzer.clone(),
            updates: self.updates.clone(),
            rollup: self.rollup.clone(),
            observer: self.observer.clone(),
            scratch_dir: self.export_scratch_dir.clone(),
            chunk_bytes: self.export_chunk_bytes,
        };
        Ok(Response::new(export::start(parts, checked, now)))
    }

    async fn get_server_info(
        &self,
        _request: Request<GetServerInfoRequest>,
    ) -> Result<Response<ServerInfo>, Status> {
        self.observed("GetServerInfo", async {
            // A file size needs no connection, so no reader is waited for.
            let store_bytes = match self.pool.any() {
                Some(reader) => tokio::task::spawn_blocking(move || reader.store_bytes())
                    .await
                    .map_err(|e| Status::internal(format!("GetServerInfo: store size: {e}")))?,
                None => 0,
            };
            Ok(ServerInfo {
                collector_version: env!("CARGO_PKG_VERSION").to_owned(),
                server_unix_ns: self.now(),
                started_unix_ns: self.facts.started_unix_ns,
                store_path: self.facts.store_path.clone(),
                store_bytes,
                agents_connected: u32::try_from(self.facts.connected.count()).unwrap_or(u32::MAX),
                tls: self.facts.tls,
                auth_required: self.facts.auth_required,
            })
        })
        .await
    }

    async fn list_nodes(
        &self,
        _request: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        self.observed("ListNodes", async {
            let nodes = self.pool.run("ListNodes", |r| r.list_nodes()).await?;
            let connected = &self.facts.connected;
            Ok(ListNodesResponse {
                nodes: nodes
                    .into_iter()
                    .map(|n| {
                        let is_connected = connected.is_connected(&n.agent_id);
                        convert::node(n, is_connected)
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        let ListContainersRequest {
            node_name,
            include_gone,
            namespace,
        } = request.into_inner();
        let now = self.now();
        self.observed("ListContainers", async {
            let (entries, inventory) = self
                .pool
                .run("ListContainers", move |r| {
                    let entries = r.list_containers_with_rates(
                        non_empty(node_name).as_deref(),
                        include_gone,
                        now,
                    )?;
                    Ok((entries, r.inventory()?))
                })
                .await?;
            Ok(ListContainersResponse {
                containers: entries
                    .into_iter()
                    .filter(|e| {
                        namespace.is_empty()
                            || convert::info_of(&e.container, &inventory)
                                .is_some_and(|i| i.namespace == namespace)
                    })
                    .map(|e| convert::entry(e, &inventory))
                    .collect(),
            })
        })
        .await
    }

    async fn list_workloads(
        &self,
        request: Request<ListWorkloadsRequest>,
    ) -> Result<Response<ListWorkloadsResponse>, Status> {
        let namespace = request.into_inner().namespace;
        let now = self.now();
        self.observed("ListWorkloads", async {
            let (entries, inventory) = self
                .pool
                .run("ListWorkloads", move |r| {
                    Ok((r.top(None, now)?, r.inventory()?))
                })
                .await?;
            Ok(ListWorkloadsResponse {
                workloads: workloads::group(&entries, &inventory, &namespace),
            })
        })
        .await
    }

    async fn get_container(
        &self,
        request: Request<GetContainerRequest>,
    ) -> Result<Response<ContainerDetail>, Status> {
        let id = request.into_inner().id;
        let now = self.now();
        self.observed("GetContainer", async {
            if id.trim().is_empty() {
                return Err(Status::invalid_argument(ID_REQUIRED));
            }
            let (detail, inventory) = self
                .pool
                .run("GetContainer", move |r| {
                    Ok((r.container(&id, now)?, r.inventory()?))
                })
                .await?;
            Ok(convert::detail(detail, &inventory))
        })
        .await
    }

    async fn get_container_series(
        &self,
        request: Request<GetContainerSeriesRequest>,
    ) -> Result<Response<GetContainerSeriesResponse>, Status> {
        let GetContainerSeriesRequest {
            id,
            start_unix_ns,
            end_unix_ns,
            step_ns,
        } = request.into_inner();
        self.observed("GetContainerSeries", async {
            if id.trim().is_empty() {
                return Err(Status::invalid_argument(ID_REQUIRED));
            }
            let series = self
                .pool
                .run("GetContainerSeries", move |r| {
                    r.series(&id, start_unix_ns, end_unix_ns, step_ns)
                })
                .await?;
            Ok(GetContainerSeriesResponse {
                r#ref: Some(convert::container_ref(&series.container)),
                step_ns: series.step_ns,
                points: series.points.into_iter().map(convert::rates).collect(),
            })
        })
        .await
    }

    async fn top(&self, request: Request<TopRequest>) -> Result<Response<TopResponse>, Status> {
        let node_name = non_empty(request.into_inner().node_name);
        let now = self.now();
        self.observed("Top", async {
            let (entries, inventory) = self
                .pool
                .run("Top", move |r| {
                    Ok((r.top(node_name.as_deref(), now)?, r.inventory()?))
                })
                .await?;
            Ok(TopResponse {
                containers: entries
                    .into_iter()
                    .map(|e| convert::entry(e, &inventory))
                    .collect(),
            })
        })
        .await
    }

    async fn list_events(
        &self,
        request: Request<ListEventsRequest>,
    ) -> Result<Response<ListEventsResponse>, Status> {
        let r = request.into_inner();
        let filter = EventFilter {
            since_unix_ns: r.since_unix_ns,
            until_unix_ns: r.until_unix_ns,
            node_name: r.node_name,
            namespace: r.namespace,
            workload: r.workload,
            container: r.container,
            kinds: r.kinds,
            limit: r.limit,
        };
        self.observed("ListEvents", async {
            if filter.since_unix_ns < 0 || filter.until_unix_ns < 0 {
                return Err(Status::invalid_argument(
                    "since_unix_ns and until_unix_ns must be >= 0 (0: unbounded)",
                ));
            }
            let events = self
                .pool
                .run("ListEvents", move |r| r.events(&filter))
                .await?;
            Ok(ListEventsResponse { events })
        })
        .await
    }

    async fn rightsize(
        &self,
        request: Request<RightsizeRequest>,
    ) -> Result<Response<RightsizeResponse>, Status> {
        let r = request.into_inner();
        self.observed("Rightsize", async {
            self.analyse("Rightsize", move |a, reader, at| {
                a.rightsize(reader, &r, at)
            })
            .await
        })
        .await
    }

    async fn list_idle(
        &self,
        request: Request<IdleRequest>,
    ) -> Result<Response<IdleResponse>, Status> {
        let r = request.into_inner();
        self.observed("ListIdle", async {
            self.analyse("ListIdle", move |a, reader, at| a.idle(reader, &r, at))
                .await
        })
        .await
    }

    async fn get_cost(
        &self,
        request: Request<CostRequest>,
    ) -> Result<Response<CostResponse>, Status> {
        let r = request.into_inner();
        self.observed("GetCost", async {
            self.analyse("GetCost", move |a, reader, at| a.cost(reader, &r, at))
                .await
        })
        .await
    }

    async fn list_updates(
        &self,
        request: Request<ListUpdatesRequest>,
    ) -> Result<Response<ListUpdatesResponse>, Status> {
        let r = request.into_inner();
        let now = self.now();
        self.observed("ListUpdates", async {
            let Some(checker) = self.updates.clone() else {
                return Err(Status::failed_precondition(
                    "this collector does not check for image updates (updates.enabled is false in its config file)",
                ));
            };
            let inventory = self
                .pool
                .run("ListUpdates", |reader| reader.inventory())
                .await?;
            Ok(checker.decide_running(&inventory, &r, now).await)
        })
        .await
    }

    async fn list_rollouts(
        &self,
        request: Request<ListRolloutsRequest>,
    ) -> Result<Response<ListRolloutsResponse>, Status> {
        let r = request.into_inner();
        let window_s = self.rollout_window_s;
        self.observed("ListRollouts", async {
            self.roll_up("ListRollouts").await?;
            let now = self.now();
            self.pool
                .run("ListRollouts", move |reader| {
                    crate::updates::rollouts::list_rollouts(reader, &r, window_s, now)
                })
                .await
        })
        .await
    }

    async fn record_update_events(
        &self,
        request: Request<RecordUpdateEventsRequest>,
    ) -> Result<Response<RecordUpdateEventsResponse>, Status> {
        // With tokens configured, writing needs the admin role; without
        // them every caller may (as every other call).
        if let Some(p) = request.extensions().get::<Principal>()
            && p.role != Role::Admin
        {
            return Err(Status::permission_denied(format!(
                "token {:?} has role {:?}; recording update events needs an admin token",
                p.name, p.role
            )));
        }
        let events = request.into_inner().events;
        let now = self.now();
        self.observed("RecordUpdateEvents", async {
            let recorded = self
                .pool
                .run("RecordUpdateEvents", move |reader| {
                    reader.record_update_events(&events, now)
                })
                .await?;
            Ok(RecordUpdateEventsResponse { recorded })
        })
        .await
    }

    async fn list_update_events(
        &self,
        request: Request<ListUpdateEventsRequest>,
    ) -> Result<Response<ListUpdateEventsResponse>, Status> {
        let r = request.into_inner();
        self.observed("ListUpdateEvents", async {
            if r.since_unix_ns < 0 {
                return Err(Status::invalid_argument(
                    "since_unix_ns must be >= 0 (0: all)",
                ));
            }
            let events = self
                .pool
                .run("ListUpdateEvents", move |reader| {
                    reader.update_events(non_empty(r.target).as_deref(), r.since_unix_ns, r.limit)
                })
                .await?;
            Ok(ListUpdateEventsResponse { events })
        })
        .await
    }
}
