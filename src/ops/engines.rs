//! The lake in other engines: the protocol check every table must pass (`lake check`), symlink
//! manifests on request (`lake manifest`), and the statements that make the tables queryable in
//! Spark, Trino, Hive, Athena and DuckDB (`lake register`).
//!
//! berserkr promises that Spark 3.5/4.x with Delta 3.x/4.x, Trino's Delta Lake connector,
//! Databricks, DuckDB's delta extension and polars (delta-rs) read every table, and that engines
//! without a Delta reader read the tables through their symlink manifests. What that allows is
//! written down once, here ([`ALLOWED_READER_FEATURES`], [`ALLOWED_WRITER_FEATURES`] and the
//! rules of [`check_table`]), and in ARCHITECTURE.md.

use std::collections::{BTreeMap, BTreeSet};

use deltalake::DeltaTable;
use deltalake::logstore::object_store::ObjectStoreExt as _;
use deltalake::logstore::object_store::path::Path;
use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
use deltalake::table::state::DeltaTableState;
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::catalog::TableId;
use crate::error::{Error, Result};
use crate::lake::manifest::{self, ManifestReport};
use crate::lake::{Lakehouse, operation};

/// Highest `minReaderVersion` every promised reader handles (3: table features).
pub const MAX_READER_VERSION: i64 = 3;
/// Highest `minWriterVersion` (7: table features).
pub const MAX_WRITER_VERSION: i64 = 7;
/// Reader features every promised reader supports. `timestampNtz` (silver's and gold's wall-clock
/// timestamps) is read by Spark with Delta 3.x, Trino, DuckDB (delta-kernel) and delta-rs.
pub const ALLOWED_READER_FEATURES: [&str; 1] = ["timestampNtz"];
/// Writer features the writers that may take turns on the lake (Spark with Delta 3.x, Trino,
/// delta-rs) all support.
pub const ALLOWED_WRITER_FEATURES: [&str; 4] = [
    "appendOnly",
    "invariants",
    "checkConstraints",
    "timestampNtz",
];

/// Why a reader feature outside the allowed set is refused (who cannot read it).
fn reader_feature_reason(feature: &str) -> &'static str {
    match feature {
        "deletionVectors" => {
            "readers of the symlink manifests (Athena, Presto, Redshift Spectrum) would see deleted rows again, and Spark before Delta 2.3 refuses the table"
        }
        "columnMapping" => {
            "readers of the symlink manifests match Parquet columns by name, which column mapping changes"
        }
        "v2Checkpoint" => "Spark before Delta 3.0 and Trino before 440 cannot read V2 checkpoints",
        "typeWidening" | "typeWidening-preview" => {
            "Spark before Delta 3.2 and readers of the symlink manifests cannot read widened types"
        }
        "variantType" | "variantType-preview" => "Spark 3.5 has no variant type",
        "vacuumProtocolCheck" => "Spark before Delta 3.3 refuses the table",
        _ => "not among the reader features every promised reader supports",
    }
}

/// One thing a table needs that a promised reader (or writer) lacks.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The protocol feature, type, column, file or property at fault.
    pub feature: String,
    /// Who cannot read it, and why.
    pub reason: String,
}

/// The outcome of checking one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    /// The table.
    pub table: String,
    /// The version checked (the latest).
    pub version: u64,
    /// `minReaderVersion`.
    pub min_reader_version: i64,
    /// `minWriterVersion`.
    pub min_writer_version: i64,
    /// Reader features of the protocol.
    pub reader_features: Vec<String>,
    /// Writer features of the protocol.
    pub writer_features: Vec<String>,
    /// Version of the last checkpoint, if any.
    pub checkpoint: Option<u64>,
    /// Whether symlink manifests are kept current for it.
    pub manifests: bool,
    /// What is wrong (empty: every promised engine reads it).
    pub problems: Vec<Problem>,
}

/// What `lake check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// One entry per existing table.
    pub tables: Vec<TableCheck>,
}

impl CheckReport {
    /// True when every table passed.
    pub fn ok(&self) -> bool {
        self.tables.iter().all(|t| t.problems.is_empty())
    }
}

/// Builder for `lake check` (see [`Lakehouse::check`]).
pub struct CheckBuilder {
    lake: Lakehouse,
    table: Option<String>,
}

impl Lakehouse {
    /// Opens every table's protocol, metadata, latest checkpoint and symlink manifests and
    /// reports what any promised engine could not read ([`CheckReport::ok`] says whether all
    /// pass).
    pub fn check(&self) -> CheckBuilder {
        CheckBuilder {
            lake: self.clone(),
            table: None,
        }
    }
}

impl CheckBuilder {
    /// Only this table.
    pub fn with_table(mut self, table: Option<String>) -> Self {
        self.table = table;
        self
    }

    async fn execute(self) -> Result<CheckReport> {
        let mut tables = Vec::new();
        for (id, table) in existing(&self.lake, self.table.as_deref()).await? {
            tables.push(check_table(&id, &table).await?);
        }
        Ok(CheckReport { tables })
    }
}
operation!(CheckBuilder => CheckReport);

/// The tables an operation applies to: the one named, or every declared table that exists.
async fn existing(lake: &Lakehouse, table: Option<&str>) -> Result<Vec<(TableId, DeltaTable)>> {
    let ids: Vec<TableId> = match table {
        Some(t) => {
            let id: TableId = t.parse()?;
            lake.catalog().table(&id)?;
            vec![id]
        }
        None => lake.catalog().tables().map(|t| t.id()).collect(),
    };
    let mut out = Vec::new();
    for id in ids {
        match table {
            Some(_) => out.push((id.clone(), lake.table(&id).await?)),
            None => {
                if let Some(t) = lake.try_table(&id).await? {
                    out.push((id, t));
                }
            }
        }
    }
    Ok(out)
}

/// Checks one table at its latest version.
pub async fn check_table(id: &TableId, table: &DeltaTable) -> Result<TableCheck> {
    let state = table.snapshot().map_err(|e| Error::delta(id, e))?;
    let protocol = serde_json::to_value(state.protocol())
        .map_err(|e| Error::serialize(format!("the protocol of {id}"), e))?;
    let metadata = serde_json::to_value(state.metadata())
        .map_err(|e| Error::serialize(format!("the metadata of {id}"), e))?;
    let features = |key: &str| -> Vec<String> {
        protocol[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut check = TableCheck {
        table: id.to_string(),
        version: state.version(),
        min_reader_version: protocol["minReaderVersion"].as_i64().unwrap_or(0),
        min_writer_version: protocol["minWriterVersion"].as_i64().unwrap_or(0),
        reader_features: features("readerFeatures"),
        writer_features: features("writerFeatures"),
        checkpoint: None,
        manifests: manifest::enabled(state),
        problems: Vec::new(),
    };
    let schema: Value = metadata["schemaString"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let configuration: BTreeMap<String, String> = state
        .metadata()
        .configuration()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let partitions = state.metadata().partition_columns().to_vec();
    let mut problems = protocol_problems(&check);
    problems.extend(schema_problems(
        &schema,
        &partitions,
        &check.reader_features,
    ));
    problems.extend(property_problems(&configuration));
    problems.extend(partition_value_problems(state, &partitions));
    let (checkpoint, checkpoint_problems) = checkpoint_problems(table, state.version()).await?;
    check.checkpoint = checkpoint;
    problems.extend(checkpoint_problems);
    problems.extend(manifest_problems(id, table, state).await?);
    check.problems = problems;
    Ok(check)
}

fn problem(feature: impl Into<String>, reason: impl Into<String>) -> Problem {
    Problem {
        feature: feature.into(),
        reason: reason.into(),
    }
}

/// Protocol versions and features outside what every promised engine reads and writes.
fn protocol_problems(c: &TableCheck) -> Vec<Problem> {
    let mut out = Vec::new();
    if c.min_reader_version > MAX_READER_VERSION {
        out.push(problem(
            format!("minReaderVersion {}", c.min_reader_version),
            "no promised reader knows a reader version above 3",
        ));
    }
    if c.min_reader_version == 2 {
        out.push(problem(
            "minReaderVersion 2 (column mapping)",
            reader_feature_reason("columnMapping"),
        ));
    }
    if c.min_writer_version > MAX_WRITER_VERSION {
        out.push(problem(
            format!("minWriterVersion {}", c.min_writer_version),
            "no promised writer knows a writer version above 7",
        ));
    }
    for f in &c.reader_features {
        if !ALLOWED_READER_FEATURES.contains(&f.as_str()) {
            out.push(problem(
                format!("reader feature {f}"),
                reader_feature_reason(f),
            ));
        }
    }
    for f in &c.writer_features {
        if !ALLOWED_WRITER_FEATURES.contains(&f.as_str())
            && !ALLOWED_READER_FEATURES.contains(&f.as_str())
        {
            out.push(problem(
                format!("writer feature {f}"),
                "Spark, Trino and delta-rs do not all write tables with it (they could not take turns with berserkr)",
            ));
        }
    }
    out
}

/// Column names and types every engine reads, and the features their types need.
fn schema_problems(
    schema: &Value,
    partitions: &[String],
    reader_features: &[String],
) -> Vec<Problem> {
    let mut out = Vec::new();
    let fields = schema["fields"].as_array().cloned().unwrap_or_default();
    let mut lower = BTreeSet::new();
    for f in &fields {
        let name = f["name"].as_str().unwrap_or_default();
        if name.chars().any(|c| " ,;{}()\n\t=".contains(c)) {
            out.push(problem(
                format!("column {name:?}"),
                "Spark refuses Parquet column names with any of ' ,;{}()\\n\\t=' (without column mapping)",
            ));
        }
        if !lower.insert(name.to_ascii_lowercase()) {
            out.push(problem(
                format!("column {name:?}"),
                "another column differs only in case: Spark, Trino, Hive and Athena resolve names case-insensitively",
            ));
        }
        type_problems(name, &f["type"], &mut out);
        let ty = f["type"].as_str().unwrap_or_default();
        if partitions.iter().any(|p| p == name)
            && !matches!(
                ty,
                "string" | "long" | "integer" | "short" | "byte" | "date" | "boolean"
            )
        {
            out.push(problem(
                format!("partition column {name} ({})", f["type"]),
                "engines disagree on how partition values of this type are written; partition by string, integer, date or boolean columns",
            ));
        }
    }
    let mut ntz = Vec::new();
    for f in &fields {
        collect_ntz(f["name"].as_str().unwrap_or_default(), &f["type"], &mut ntz);
    }
    if let Some(col) = ntz.first()
        && !reader_features.iter().any(|f| f == "timestampNtz")
    {
        out.push(problem(
            format!("column {col} (timestamp_ntz)"),
            "a timestamp_ntz column needs the timestampNtz reader feature in the protocol: Spark and Trino refuse the table without it",
        ));
    }
    out
}

fn type_problems(name: &str, ty: &Value, out: &mut Vec<Problem>) {
    match ty {
        Value::String(t) => {
            let ok = matches!(
                t.as_str(),
                "string"
                    | "long"
                    | "integer"
                    | "short"
                    | "byte"
                    | "double"
                    | "float"
                    | "boolean"
                    | "binary"
                    | "date"
                    | "timestamp"
                    | "timestamp_ntz"
            ) || t.starts_with("decimal(");
            if !ok {
                out.push(problem(
                    format!("column {name} ({t})"),
                    "not a type every promised engine reads",
                ));
            }
        }
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("struct") => {
                for f in o
                    .get("fields")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let inner = format!("{name}.{}", f["name"].as_str().unwrap_or_default());
                    type_problems(&inner, &f["type"], out);
                }
            }
            Some("array") => type_problems(name, &o["elementType"], out),
            Some("map") => {
                type_problems(name, &o["keyType"], out);
                type_problems(name, &o["valueType"], out);
            }
            other => out.push(problem(
                format!("column {name} ({other:?})"),
                "not a type every promised engine reads",
            )),
        },
        other => out.push(problem(
            format!("column {name} ({other})"),
            "unreadable type",
        )),
    }
}

fn collect_ntz(name: &str, ty: &Value, out: &mut Vec<String>) {
    match ty {
        Value::String(t) if t == "timestamp_ntz" => out.push(name.to_string()),
        Value::Object(o) => {
            for key in ["elementType", "keyType", "valueType"] {
                if let Some(t) = o.get(key) {
                    collect_ntz(name, t, out);
                }
            }
            for f in o
                .get("fields")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                collect_ntz(
                    &format!("{name}.{}", f["name"].as_str().unwrap_or_default()),
                    &f["type"],
                    out,
                );
            }
        }
        _ => {}
    }
}

/// Table properties that would turn on a refused feature at the next write.
fn property_problems(configuration: &BTreeMap<String, String>) -> Vec<Problem> {
    let mut out = Vec::new();
    let truthy = |k: &str| {
        configuration
            .get(k)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    };
    for (key, feature) in [
        ("delta.enableDeletionVectors", "deletionVectors"),
        ("delta.enableTypeWidening", "typeWidening"),
    ] {
        if truthy(key) {
            out.push(problem(
                format!("property {key}"),
                format!(
                    "the next write would turn on {feature}: {}",
                    reader_feature_reason(feature)
                ),
            ));
        }
    }
    if let Some(mode) = configuration.get("delta.columnMapping.mode")
        && !mode.eq_ignore_ascii_case("none")
    {
        out.push(problem(
            "property delta.columnMapping.mode",
            reader_feature_reason("columnMapping"),
        ));
    }
    if configuration
        .get("delta.checkpointPolicy")
        .is_some_and(|v| v.eq_ignore_ascii_case("v2"))
    {
        out.push(problem(
            "property delta.checkpointPolicy",
            reader_feature_reason("v2Checkpoint"),
        ));
    }
    for (key, value) in configuration {
        if let Some(feature) = key.strip_prefix("delta.feature.")
            && !ALLOWED_READER_FEATURES.contains(&feature)
            && !ALLOWED_WRITER_FEATURES.contains(&feature)
            && matches!(value.to_ascii_lowercase().as_str(), "supported" | "enabled")
        {
            out.push(problem(
                format!("property {key}"),
                reader_feature_reason(feature),
            ));
        }
    }
    out
}

/// Each file's partition values must name exactly the partition columns, and its path must
/// hold them as Hive-style directories (engines reading files by path take the values from
/// there).
fn partition_value_problems(state: &DeltaTableState, partitions: &[String]) -> Vec<Problem> {
    let mut out = Vec::new();
    for f in state.log_data().iter() {
        let values = f.partition_values_map();
        let path = f.path();
        let keys: BTreeSet<&String> = values.keys().collect();
        if keys != partitions.iter().collect() {
            out.push(problem(
                format!("file {path}"),
                format!(
                    "its partition values name {keys:?}, the table is partitioned by {partitions:?}"
                ),
            ));
            continue;
        }
        let dirs: Vec<&str> = path.split('/').collect();
        for (i, c) in partitions.iter().enumerate() {
            let value = values.get(c).cloned().flatten();
            let want = format!(
                "{}={}",
                manifest::hive_escape(c),
                value
                    .as_deref()
                    .map_or("__HIVE_DEFAULT_PARTITION__".into(), manifest::hive_escape)
            );
            let unescaped = |d: &str| {
                percent_encoding::percent_decode_str(d)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            let ok = dirs.get(i).is_some_and(|d| {
                *d == want
                    || unescaped(d)
                        == format!(
                            "{c}={}",
                            value.as_deref().unwrap_or("__HIVE_DEFAULT_PARTITION__")
                        )
            });
            if !ok {
                out.push(problem(
                    format!("file {path}"),
                    format!(
                        "its directory does not hold partition {c}={value:?} as {want:?}: readers that take partition values from paths would read another value"
                    ),
                ));
                break;
            }
        }
        if out.len() >= 10 {
            break; // enough to say what is wrong
        }
    }
    out
}

/// The last checkpoint: a classic single-file (or multi-part) Parquet checkpoint every promised
/// reader opens, holding the columns they read.
async fn checkpoint_problems(
    table: &DeltaTable,
    version: u64,
) -> Result<(Option<u64>, Vec<Problem>)> {
    let store = table.log_store().object_store(None);
    let at = |p: &Path| format!("{}{p}", table.table_url());
    let hint = Path::from("_delta_log/_last_checkpoint");
    let bytes = match store.get(&hint).await {
        Ok(r) => r.bytes().await.map_err(|e| Error::store(at(&hint), e))?,
        Err(deltalake::ObjectStoreError::NotFound { .. }) => return Ok((None, Vec::new())),
        Err(e) => return Err(Error::store(at(&hint), e)),
    };
    let mut out = Vec::new();
    let hint_json: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            out.push(problem(
                "_delta_log/_last_checkpoint",
                format!("not JSON ({e}): readers fall back to listing the log, some fail"),
            ));
            return Ok((None, out));
        }
    };
    let Some(cp) = hint_json["version"].as_u64() else {
        out.push(problem("_delta_log/_last_checkpoint", "has no version"));
        return Ok((None, out));
    };
    if hint_json.get("v2Checkpoint").is_some()
        || hint_json
            .get("checkpointSchema")
            .is_some_and(|s| s.to_string().contains("sidecar"))
    {
        out.push(problem(
            format!("checkpoint {cp}"),
            reader_feature_reason("v2Checkpoint"),
        ));
    }
    if cp > version {
        out.push(problem(
            format!("checkpoint {cp}"),
            format!("is past the table's latest version {version}"),
        ));
    }
    out.extend(checkpoint_file_problems(table, cp).await?);
    Ok((Some(cp), out))
}

/// The files of checkpoint `cp`: a classic Parquet checkpoint (single or multi-part) exists,
/// opens, and has the columns every reader reads.
async fn checkpoint_file_problems(table: &DeltaTable, cp: u64) -> Result<Vec<Problem>> {
    let store = table.log_store().object_store(None);
    let at = |p: &Path| format!("{}{p}", table.table_url());
    let prefix = Path::from(format!("_delta_log/{cp:020}.checkpoint"));
    let files: Vec<Path> = store
        .list(Some(&Path::from("_delta_log")))
        .try_filter(|m| std::future::ready(m.location.as_ref().starts_with(prefix.as_ref())))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| Error::store(at(&prefix), e))?;
    let classic: Vec<&Path> = files
        .iter()
        .filter(|p| is_classic_checkpoint(p.as_ref(), cp))
        .collect();
    if classic.is_empty() {
        let named = files.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        return Ok(vec![problem(
            format!("checkpoint {cp}"),
            if named.is_empty() {
                "_last_checkpoint names it, but no checkpoint file of that version exists"
                    .to_string()
            } else {
                format!(
                    "only {named:?}: not a classic Parquet checkpoint ({})",
                    reader_feature_reason("v2Checkpoint")
                )
            },
        )]);
    }
    let mut out = Vec::new();
    for path in classic {
        // A checkpoint holds one row per live file: small next to the data it describes.
        let bytes = store
            .get(path)
            .await
            .map_err(|e| Error::store(at(path), e))?
            .bytes()
            .await
            .map_err(|e| Error::store(at(path), e))?;
        let columns: Vec<String> = match SerializedFileReader::new(bytes) {
            Ok(r) => r
                .metadata()
                .file_metadata()
                .schema_descr()
                .root_schema()
                .get_fields()
                .iter()
                .map(|f| f.name().to_string())
                .collect(),
            Err(e) => {
                out.push(problem(
                    format!("checkpoint file {path}"),
                    format!("not a readable Parquet file: {e}"),
                ));
                continue;
            }
        };
        for needed in ["add", "remove", "metaData", "protocol"] {
            if !columns.iter().any(|c| c == needed) {
                out.push(problem(
                    format!("checkpoint file {path}"),
                    format!("has no {needed} column, which every reader reads"),
                ));
            }
        }
    }
    Ok(out)
}

/// `<v>.checkpoint.parquet` or `<v>.checkpoint.<part>.<parts>.parquet` (not a V2 UUID-named one).
fn is_classic_checkpoint(path: &str, version: u64) -> bool {
    let Some(name) = path.rsplit('/').next() else {
        return false;
    };
    let Some(rest) = name.strip_prefix(&format!("{version:020}.checkpoint.")) else {
        return false;
    };
    if rest == "parquet" {
        return true;
    }
    let Some(middle) = rest.strip_suffix(".parquet") else {
        return false;
    };
    let parts: Vec<&str> = middle.split('.').collect();
    parts.len() == 2
        && parts
            .iter()
            .all(|p| p.len() == 10 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Manifests that exist must list exactly the snapshot's files (stale ones make other engines
/// read old rows); a table that asks for them must have them.
async fn manifest_problems(
    id: &TableId,
    table: &DeltaTable,
    state: &DeltaTableState,
) -> Result<Vec<Problem>> {
    let log_store = table.log_store();
    let have = manifest::read(id, &log_store).await?;
    let enabled = manifest::enabled(state);
    if have.is_empty() && !enabled {
        return Ok(Vec::new());
    }
    let want = manifest::manifests_of(state, log_store.root_url().as_str());
    let mut out = Vec::new();
    let fix = format!("run `berserkr lake manifest --table {id}`");
    for (key, files) in &want {
        match have.get(key) {
            None => out.push(problem(
                format!("manifest {key}"),
                format!("missing: Athena, Presto and Redshift Spectrum would not see this partition ({fix})"),
            )),
            Some(listed) => {
                let listed: BTreeSet<&String> = listed.iter().collect();
                if listed != files.iter().collect() {
                    out.push(problem(
                        format!("manifest {key}"),
                        format!(
                            "stale: lists {} files, the snapshot holds {} ({fix})",
                            listed.len(),
                            files.len()
                        ),
                    ));
                }
            }
        }
    }
    for key in have.keys().filter(|k| !want.contains_key(*k)) {
        out.push(problem(
            format!("manifest {key}"),
            format!("lists a partition the snapshot no longer has ({fix})"),
        ));
    }
    if !enabled && !out.is_empty() {
        out.push(problem(
            format!("property {}", manifest::MANIFEST_PROPERTY),
            "manifests exist but are not kept current after commits: set the property or delete them",
        ));
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------------
// manifest

/// What `lake manifest` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestsReport {
    /// One entry per table.
    pub tables: Vec<ManifestReport>,
}

/// Builder for `lake manifest` (see [`Lakehouse::manifest`]).
pub struct ManifestBuilder {
    lake: Lakehouse,
    table: Option<String>,
}

impl Lakehouse {
    /// Writes the symlink manifests of one table ([`ManifestBuilder::with_table`], whatever its
    /// properties say), or of every table whose property
    /// `delta.compatibility.symlinkFormatManifest.enabled` is true.
    pub fn manifest(&self) -> ManifestBuilder {
        ManifestBuilder {
            lake: self.clone(),
            table: None,
        }
    }
}

impl ManifestBuilder {
    /// Only this table (written even when its property is off).
    pub fn with_table(mut self, table: Option<String>) -> Self {
        self.table = table;
        self
    }

    async fn execute(self) -> Result<ManifestsReport> {
        let mut tables = Vec::new();
        for (id, table) in existing(&self.lake, self.table.as_deref()).await? {
            let state = table.snapshot().map_err(|e| Error::delta(&id, e))?;
            if self.table.is_some() || manifest::enabled(state) {
                tables.push(manifest::write(&id, &table.log_store(), state).await?);
            }
        }
        Ok(ManifestsReport { tables })
    }
}
operation!(ManifestBuilder => ManifestsReport);

// ------------------------------------------------------------------------------------------------
// register

/// An engine `lake register` writes statements for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Spark SQL with delta-spark (`CREATE TABLE ... USING DELTA LOCATION`).
    Spark,
    /// Trino's Delta Lake connector (`CALL <catalog>.system.register_table`).
    Trino,
    /// Hive: an external table over the symlink manifests.
    Hive,
    /// Athena: the same external table over the symlink manifests.
    Athena,
    /// DuckDB's delta extension (`CREATE VIEW ... delta_scan(...)`).
    Duckdb,
}

impl Engine {
    fn time_travel(self) -> bool {
        matches!(self, Self::Spark | Self::Trino | Self::Duckdb)
    }
}

/// The statements for one table.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// The table.
    pub table: String,
    /// Where the engine reads it.
    pub location: String,
    /// SQL statements, in order (each ends with `;`), comments first.
    pub statements: Vec<String>,
}

/// Builder for `lake register` (see [`Lakehouse::register`]).
pub struct RegisterBuilder {
    lake: Lakehouse,
    engine: Engine,
    table: Option<String>,
    version: Option<u64>,
    lake_url: Option<String>,
    catalog: String,
}

impl Lakehouse {
    /// The statements that make every lake table (or one) queryable in `engine`.
    pub fn register(&self, engine: Engine) -> RegisterBuilder {
        RegisterBuilder {
            lake: self.clone(),
            engine,
            table: None,
            version: None,
            lake_url: None,
            catalog: "delta".into(),
        }
    }
}

impl RegisterBuilder {
    /// Only this table.
    pub fn with_table(mut self, table: Option<String>) -> Self {
        self.table = table;
        self
    }

    /// A view of this version (time travel; Spark, Trino and DuckDB; needs one table).
    pub fn with_version(mut self, version: Option<u64>) -> Self {
        self.version = version;
        self
    }

    /// The lake's root as the engine reaches it (default: the lake's own URL; `s3://` becomes
    /// `s3a://` for Spark and Hive).
    pub fn with_lake_url(mut self, url: Option<String>) -> Self {
        self.lake_url = url;
        self
    }

    /// Trino's catalog name (default `delta`).
    pub fn with_catalog(mut self, catalog: impl Into<String>) -> Self {
        self.catalog = catalog.into();
        self
    }

    async fn execute(self) -> Result<Vec<Registration>> {
        if self.version.is_some() && self.table.is_none() {
            return Err(Error::InvalidArgument(
                "--version needs --table: versions differ from table to table".into(),
            ));
        }
        if self.version.is_some() && !self.engine.time_travel() {
            return Err(Error::InvalidArgument(format!(
                "{:?} reads the symlink manifests, which list only the latest snapshot: time travel needs spark, trino or duckdb",
                self.engine
            )));
        }
        let mut out = Vec::new();
        for (id, table) in existing(&self.lake, self.table.as_deref()).await? {
            if let Some(v) = self.version {
                self.lake
                    .table_at(&id, &crate::lake::At::Version(v))
                    .await?;
            }
            out.push(self.registration(&id, &table)?);
        }
        Ok(out)
    }

    fn location(&self, id: &TableId) -> String {
        let root = match &self.lake_url {
            Some(u) => format!("{}/", u.trim_end_matches('/')),
            None => self.lake.root().to_string(),
        };
        let root = match self.engine {
            Engine::Spark | Engine::Hive => match root.strip_prefix("s3://") {
                Some(rest) => format!("s3a://{rest}"),
                None => root,
            },
            _ => root,
        };
        format!("{root}{}", id.path())
    }

    fn registration(&self, id: &TableId, table: &DeltaTable) -> Result<Registration> {
        let location = self.location(id);
        let (schema, name) = (&id.layer, &id.name);
        let q = |s: &str| s.replace('\'', "''");
        let view = self.version.map(|v| format!("{name}_v{v}"));
        let statements = match self.engine {
            Engine::Spark => {
                let mut s = vec![format!("CREATE SCHEMA IF NOT EXISTS {schema};")];
                match (self.version, &view) {
                    (Some(v), Some(view)) => s.push(format!(
                        "CREATE OR REPLACE VIEW {schema}.{view} AS SELECT * FROM delta.`{location}` VERSION AS OF {v};"
                    )),
                    _ => s.push(format!(
                        "CREATE TABLE IF NOT EXISTS {schema}.{name} USING DELTA LOCATION '{}';",
                        q(&location)
                    )),
                }
                s
            }
            Engine::Trino => {
                let c = &self.catalog;
                let mut s = vec![
                    format!("CREATE SCHEMA IF NOT EXISTS {c}.{schema};"),
                    format!(
                        "CALL {c}.system.register_table(schema_name => '{schema}', table_name => '{name}', table_location => '{}');",
                        q(&location)
                    ),
                ];
                if let (Some(v), Some(view)) = (self.version, &view) {
                    s.push(format!(
                        "CREATE OR REPLACE VIEW {c}.{schema}.{view} AS SELECT * FROM {c}.{schema}.{name} FOR VERSION AS OF {v};"
                    ));
                }
                s
            }
            Engine::Hive | Engine::Athena => hive_statements(id, table, &location)?,
            Engine::Duckdb => {
                let mut s = Vec::new();
                if location.starts_with("s3") {
                    s.push("-- S3: LOAD httpfs; CREATE SECRET (TYPE s3, PROVIDER credential_chain); first".to_string());
                }
                s.push("INSTALL delta; LOAD delta;".into());
                s.push(format!("CREATE SCHEMA IF NOT EXISTS {schema};"));
                s.push(match (self.version, &view) {
                    (Some(v), Some(view)) => format!(
                        "CREATE OR REPLACE VIEW {schema}.{view} AS SELECT * FROM delta_scan('{}', version => {v});",
                        q(&location)
                    ),
                    _ => format!(
                        "CREATE OR REPLACE VIEW {schema}.{name} AS SELECT * FROM delta_scan('{}');",
                        q(&location)
                    ),
                });
                s
            }
        };
        Ok(Registration {
            table: id.to_string(),
            location,
            statements,
        })
    }
}
operation!(RegisterBuilder => Vec<Registration>);

/// An external Hive/Athena table over the symlink manifests of `table`, then the partition
/// discovery that finds them.
fn hive_statements(id: &TableId, table: &DeltaTable, location: &str) -> Result<Vec<String>> {
    let state = table.snapshot().map_err(|e| Error::delta(id, e))?;
    let metadata = serde_json::to_value(state.metadata())
        .map_err(|e| Error::serialize(format!("the metadata of {id}"), e))?;
    let schema: Value = metadata["schemaString"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let partitions = state.metadata().partition_columns().to_vec();
    let (mut columns, mut partitioned) = (Vec::new(), Vec::new());
    for f in schema["fields"].as_array().into_iter().flatten() {
        let name = f["name"].as_str().unwrap_or_default();
        let col = format!("`{name}` {}", hive_type(&f["type"], id)?);
        if partitions.iter().any(|p| p == name) {
            partitioned.push(col);
        } else {
            columns.push(col);
        }
    }
    let mut s = Vec::new();
    if !manifest::enabled(state) {
        s.push(format!(
            "-- {id} does not keep its manifests current ({} is not set): run `berserkr lake manifest --table {id}` after every change",
            manifest::MANIFEST_PROPERTY
        ));
    }
    s.push(format!("CREATE DATABASE IF NOT EXISTS {};", id.layer));
    let mut ddl = format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS {}.{} (\n  {}\n)\n",
        id.layer,
        id.name,
        columns.join(",\n  ")
    );
    if !partitioned.is_empty() {
        ddl.push_str(&format!("PARTITIONED BY ({})\n", partitioned.join(", ")));
    }
    ddl.push_str(&format!(
        "ROW FORMAT SERDE 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'\n\
         STORED AS INPUTFORMAT 'org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat'\n\
         OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\n\
         LOCATION '{}/{}/';",
        location.replace('\'', "''"),
        manifest::MANIFEST_DIR
    ));
    s.push(ddl);
    if !partitioned.is_empty() {
        s.push(format!("MSCK REPAIR TABLE {}.{};", id.layer, id.name));
    }
    Ok(s)
}

/// A Delta type as Hive writes it.
fn hive_type(ty: &Value, id: &TableId) -> Result<String> {
    let unsupported = || {
        Error::InvalidArgument(format!(
            "{id}: type {ty} has no Hive equivalent berserkr writes"
        ))
    };
    let t = ty.as_str().ok_or_else(unsupported)?;
    Ok(match t {
        "string" => "string".into(),
        "long" => "bigint".into(),
        "integer" => "int".into(),
        "short" => "smallint".into(),
        "byte" => "tinyint".into(),
        "double" => "double".into(),
        "float" => "float".into(),
        "boolean" => "boolean".into(),
        "binary" => "binary".into(),
        "date" => "date".into(),
        "timestamp" | "timestamp_ntz" => "timestamp".into(),
        d if d.starts_with("decimal(") => d.into(),
        _ => return Err(unsupported()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(reader: &[&str], writer: &[&str], rv: i64, wv: i64) -> Vec<Problem> {
        protocol_problems(&TableCheck {
            table: "t.t".into(),
            version: 1,
            min_reader_version: rv,
            min_writer_version: wv,
            reader_features: reader.iter().map(|s| s.to_string()).collect(),
            writer_features: writer.iter().map(|s| s.to_string()).collect(),
            checkpoint: None,
            manifests: false,
            problems: Vec::new(),
        })
    }

    #[test]
    fn protocols_outside_the_promise_are_named() {
        assert!(
            check(
                &["timestampNtz"],
                &["timestampNtz", "checkConstraints"],
                3,
                7
            )
            .is_empty()
        );
        assert!(check(&[], &[], 1, 2).is_empty());
        let p = check(
            &["timestampNtz", "deletionVectors"],
            &["deletionVectors"],
            3,
            7,
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].feature, "reader feature deletionVectors");
        assert!(p[0].reason.contains("Athena"), "{p:?}");
        assert_eq!(p[1].feature, "writer feature deletionVectors");
        assert_eq!(
            check(&[], &[], 2, 5)[0].feature,
            "minReaderVersion 2 (column mapping)"
        );
        assert_eq!(check(&[], &[], 4, 7)[0].feature, "minReaderVersion 4");
    }

    #[test]
    fn schemas_every_engine_reads() {
        let schema = |fields: Value| serde_json::json!({"type": "struct", "fields": fields});
        let ok = schema(serde_json::json!([
            {"name": "a", "type": "string", "nullable": true, "metadata": {}},
            {"name": "t", "type": "timestamp_ntz", "nullable": true, "metadata": {}},
        ]));
        assert!(schema_problems(&ok, &[], &["timestampNtz".into()]).is_empty());
        let p = schema_problems(&ok, &[], &[]);
        assert_eq!(p[0].feature, "column t (timestamp_ntz)");
        let bad = schema(serde_json::json!([
            {"name": "a b", "type": "string", "nullable": true, "metadata": {}},
            {"name": "A B", "type": "string", "nullable": true, "metadata": {}},
            {"name": "v", "type": "variant", "nullable": true, "metadata": {}},
            {"name": "ts", "type": "timestamp", "nullable": true, "metadata": {}},
        ]));
        let p: Vec<String> = schema_problems(&bad, &["ts".into()], &[])
            .into_iter()
            .map(|p| p.feature)
            .collect();
        assert_eq!(
            p,
            [
                "column \"a b\"",
                "column \"A B\"",
                "column \"A B\"",
                "column v (variant)",
                "partition column ts (\"timestamp\")"
            ]
        );
    }

    #[test]
    fn properties_that_would_turn_on_refused_features() {
        let conf = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(property_problems(&conf(&[("delta.checkpointInterval", "20")])).is_empty());
        let p = property_problems(&conf(&[
            ("delta.enableDeletionVectors", "true"),
            ("delta.columnMapping.mode", "name"),
            ("delta.feature.v2Checkpoint", "supported"),
            ("delta.feature.timestampNtz", "supported"),
        ]));
        let named: Vec<&str> = p.iter().map(|p| p.feature.as_str()).collect();
        assert_eq!(
            named,
            [
                "property delta.enableDeletionVectors",
                "property delta.columnMapping.mode",
                "property delta.feature.v2Checkpoint"
            ]
        );
    }

    #[test]
    fn classic_checkpoints_only() {
        assert!(is_classic_checkpoint(
            "_delta_log/00000000000000000010.checkpoint.parquet",
            10
        ));
        assert!(is_classic_checkpoint(
            "_delta_log/00000000000000000010.checkpoint.0000000001.0000000002.parquet",
            10
        ));
        assert!(!is_classic_checkpoint(
            "_delta_log/00000000000000000010.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.parquet",
            10
        ));
        assert!(!is_classic_checkpoint(
            "_delta_log/00000000000000000010.checkpoint.80a083e8-7026-4e79-81be-64bd76c43a11.json",
            10
        ));
    }
}
