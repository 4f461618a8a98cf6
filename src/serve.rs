//! `berserkr serve`: a trained model's scores over HTTP, as deployed models are served behind
//! Openscoring's REST API.
//!
//! - `GET /customers/{id}/top?k=10`: the customer's `k` most likely items from the model's latest
//!   scores in `gold.purchase_scores` (what `berserkr score` wrote), ranked as written;
//! - `POST /score`: feature rows as JSON (`{"rows": [{"n_purchases": 3, ...}, ...]}`, every
//!   feature of the model by name) → the model's probabilities, in order;
//! - `GET /health`: the model, the scores' table version, cutoff and customers.
//!
//! The scores of the model are held in memory, indexed by customer, and reloaded when a newer
//! version of the scores table lands (checked every [`ServeBuilder::with_reload_interval`]). A
//! request that cannot be answered gets a 4xx status with the reason as JSON
//! (`{"error": "..."}`), never a crash; bodies over 1 MiB are refused.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Float64Type, Int64Type};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::{SCORES, TableId};
use crate::error::{Error, Result};
use crate::lake::Lakehouse;
use crate::ml::{Manifest, Model, read_manifest, read_model};
use crate::session::{collect_sql, session};

/// Largest request body `POST /score` takes.
pub const MAX_BODY: usize = 1 << 20;
/// Most items `GET /customers/{id}/top` returns.
pub const MAX_K: usize = 1000;

/// Builder of a server (see [`Lakehouse::serve`]).
pub struct ServeBuilder {
    lake: Lakehouse,
    model_dir: PathBuf,
    addr: SocketAddr,
    reload: Duration,
}

impl Lakehouse {
    /// A server of the model in `model_dir` and its scores (default address 127.0.0.1:8080).
    pub fn serve(&self, model_dir: impl Into<PathBuf>) -> ServeBuilder {
        ServeBuilder {
            lake: self.clone(),
            model_dir: model_dir.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            reload: Duration::from_secs(5),
        }
    }
}

/// One scored item of a customer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Item {
    /// Rank among the customer's items (1 = most likely).
    pub rank: u32,
    /// The item.
    pub stock_code: String,
    /// Purchase probability.
    pub score: f64,
}

/// The model's scores as loaded from one version of the scores table.
#[derive(Debug, Default)]
struct Index {
    version: u64,
    cutoff: Option<String>,
    source_table: Option<String>,
    source_version: Option<i64>,
    by_customer: HashMap<i64, Vec<Item>>,
}

struct State {
    lake: Lakehouse,
    manifest: Manifest,
    model: Model,
    scores: TableId,
    index: RwLock<Arc<Index>>,
}

/// A bound server: [`Server::local_addr`] says where, [`Server::run`] serves.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    reload: Duration,
}

impl ServeBuilder {
    /// The address to listen on (port 0: any free port).
    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// How often to look for newer scores (default 5 s).
    pub fn with_reload_interval(mut self, every: Duration) -> Self {
        self.reload = every;
        self
    }

    /// Loads the model and its scores and binds the address.
    pub async fn bind(self) -> Result<Server> {
        let manifest = read_manifest(&self.model_dir).await?;
        let model = read_model(&self.model_dir).await?;
        let scores: TableId = SCORES.parse()?;
        let state = State {
            index: RwLock::new(Arc::new(Index::default())),
            lake: self.lake,
            manifest,
            model,
            scores,
        };
        state.reload().await?;
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|e| Error::io(self.addr, e))?;
        Ok(Server {
            listener,
            state: Arc::new(state),
            reload: self.reload,
        })
    }
}

impl Server {
    /// The address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(|e| Error::io("the server's socket", e))
    }

    /// The model served.
    pub fn model_id(&self) -> &str {
        &self.state.manifest.model_id
    }

    /// Customers with scores now.
    pub fn customers(&self) -> usize {
        self.state.index().by_customer.len()
    }

    /// Serves until the process ends (or accepting connections fails).
    pub async fn run(self) -> Result<()> {
        let reloader = {
            let (state, every) = (self.state.clone(), self.reload);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    // A failed reload keeps serving the scores already loaded.
                    let _ = state.reload_if_newer().await;
                }
            })
        };
        let result = loop {
            let (stream, _) = match self.listener.accept().await {
                Ok(s) => s,
                Err(e) => break Err(Error::io("accepting a connection", e)),
            };
            let state = self.state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        };
        reloader.abort();
        result
    }
}

impl State {
    fn index(&self) -> Arc<Index> {
        self.index.read().expect("index lock").clone()
    }

    /// Reloads the scores when the table has a newer version than the one loaded.
    async fn reload_if_newer(&self) -> Result<()> {
        let table = self.lake.table(&self.scores).await?;
        if table.version().unwrap_or(0) > self.index().version {
            self.reload().await?;
        }
        Ok(())
    }

    /// Loads the model's rows of the latest scores into a new index and swaps it in.
    async fn reload(&self) -> Result<()> {
        let id = &self.scores;
        let table = self.lake.table(id).await?;
        let ctx = session();
        ctx.register_table(
            "scores",
            table
                .table_provider()
                .await
                .map_err(crate::session::df(id))?,
        )
        .map_err(crate::session::df(id))?;
        let model_id = self.manifest.model_id.replace('\'', "''");
        let batches = collect_sql(
            &ctx,
            &format!(
                "SELECT CustomerID, StockCode, score, rank, cutoff, source_table, source_version \
                 FROM scores WHERE model_id = '{model_id}' ORDER BY CustomerID, rank"
            ),
            id,
        )
        .await?;
        let mut index = Index {
            version: table.version().unwrap_or(0),
            ..Default::default()
        };
        for b in &batches {
            add_rows(&mut index, b, id)?;
        }
        *self.index.write().expect("index lock") = Arc::new(index);
        Ok(())
    }
}

fn add_rows(index: &mut Index, b: &RecordBatch, id: &TableId) -> Result<()> {
    let arrow = |source| Error::Arrow {
        context: format!("scores of {id}"),
        source,
    };
    let customer = cast(b.column(0), &DataType::Int64).map_err(arrow)?;
    let item = cast(b.column(1), &DataType::Utf8).map_err(arrow)?;
    let score = cast(b.column(2), &DataType::Float64).map_err(arrow)?;
    let rank = cast(b.column(3), &DataType::Int64).map_err(arrow)?;
    let cutoff = cast(b.column(4), &DataType::Utf8).map_err(arrow)?;
    let source = cast(b.column(5), &DataType::Utf8).map_err(arrow)?;
    let version = cast(b.column(6), &DataType::Int64).map_err(arrow)?;
    let (customer, item, score, rank) = (
        customer.as_primitive::<Int64Type>(),
        item.as_string::<i32>(),
        score.as_primitive::<Float64Type>(),
        rank.as_primitive::<Int64Type>(),
    );
    if b.num_rows() > 0 {
        index.cutoff = Some(cutoff.as_string::<i32>().value(0).to_string());
        index.source_table = Some(source.as_string::<i32>().value(0).to_string());
        index.source_version = Some(version.as_primitive::<Int64Type>().value(0));
    }
    for r in 0..b.num_rows() {
        if customer.is_null(r) {
            continue;
        }
        index
            .by_customer
            .entry(customer.value(r))
            .or_default()
            .push(Item {
                rank: rank.value(r) as u32,
                stock_code: item.value(r).to_string(),
                score: score.value(r),
            });
    }
    Ok(())
}

/// A JSON response.
fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Response<Full<Bytes>> {
    reply(status, json!({ "error": reason.into() }))
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["health"]) => health(state),
        (&Method::GET, ["customers", id, "top"]) => top(state, id, &query),
        (&Method::POST, ["score"]) => score(state, req).await,
        (_, ["health"]) | (_, ["customers", _, "top"]) | (_, ["score"]) => refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        ),
        _ => refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no such resource {path}: GET /health, GET /customers/{{id}}/top?k=10, POST /score"
            ),
        ),
    }
}

fn health(state: &State) -> Response<Full<Bytes>> {
    let index = state.index();
    reply(
        StatusCode::OK,
        json!({
            "status": "ok",
            "model_id": state.manifest.model_id,
            "features": state.manifest.features,
            "scores_table": state.scores.to_string(),
            "scores_version": index.version,
            "cutoff": index.cutoff,
            "source_table": index.source_table,
            "source_version": index.source_version,
            "customers": index.by_customer.len(),
        }),
    )
}

fn top(state: &State, id: &str, query: &str) -> Response<Full<Bytes>> {
    let Ok(customer) = id.parse::<i64>() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("customer id {id:?} is not an integer"),
        );
    };
    let mut k = 10usize;
    for (key, value) in query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
    {
        if key == "k" {
            match value.parse::<usize>() {
                Ok(n) if (1..=MAX_K).contains(&n) => k = n,
                _ => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        format!("k={value:?} is not a number from 1 to {MAX_K}"),
                    );
                }
            }
        }
    }
    let index = state.index();
    let Some(items) = index.by_customer.get(&customer) else {
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "customer {customer} has no scores from model {} (scores version {})",
                state.manifest.model_id, index.version
            ),
        );
    };
    reply(
        StatusCode::OK,
        json!({
            "customer": customer,
            "model_id": state.manifest.model_id,
            "cutoff": index.cutoff,
            "scores_version": index.version,
            "items": &items[..k.min(items.len())],
        }),
    )
}

async fn score(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body could not be read or is over {MAX_BODY} bytes: {e}"),
            );
        }
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("not JSON: {e}")),
    };
    let rows = match value.get("rows").unwrap_or(&value) {
        Value::Array(rows) => rows,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "expected {\"rows\": [{feature: number, ...}, ...]}",
            );
        }
    };
    match feature_columns(&state.model, rows) {
        Ok(columns) => {
            let scores = state.model.predict_columns(&columns);
            reply(
                StatusCode::OK,
                json!({"model_id": state.manifest.model_id, "scores": scores}),
            )
        }
        Err(reason) => refuse(StatusCode::BAD_REQUEST, reason),
    }
}

/// The model's feature columns from JSON rows (each row an object naming every feature).
fn feature_columns(model: &Model, rows: &[Value]) -> std::result::Result<Vec<Vec<f64>>, String> {
    let mut columns = vec![Vec::with_capacity(rows.len()); model.features.len()];
    for (i, row) in rows.iter().enumerate() {
        let Value::Object(row) = row else {
            return Err(format!("row {i} is not an object"));
        };
        for (f, name) in model.features.iter().enumerate() {
            let v = row
                .get(name)
                .ok_or_else(|| format!("row {i} has no feature {name}"))?
                .as_f64()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("row {i}: feature {name} is not a finite number"))?;
            columns[f].push(v);
        }
    }
    Ok(columns)
}
