//! What each table is: the declarations of `tables/` and the migration steps of `migrations/`.
//!
//! Both folders are embedded in the binary at build time (see `build.rs`). A declaration
//! (`tables/<layer>/<name>.toml`) states the table as it should be now: columns and their roles,
//! partitioning, properties and constraints. The migrations (`migrations/NNNN_slug.toml`) are the
//! ordered, immutable steps that get each table there; [`crate::migrate`] applies them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use deltalake::arrow::datatypes::{
    DataType as ArrowType, Field as ArrowField, Schema as ArrowSchema, TimeUnit,
};
use deltalake::kernel::{DataType, PrimitiveType, StructField};
use serde::Deserialize;

use crate::error::{Error, Result};

/// The bronze table drops are appended to unless another is named.
pub const BRONZE: &str = "bronze.online_retail";
/// The gold feature table `lake refresh gold` builds and models train on.
pub const GOLD_FEATURES: &str = "gold.customer_item_features";
/// The gold table batch scores are written to.
pub const SCORES: &str = "gold.purchase_scores";
/// The gold table of features as of the latest silver timestamp, without a label: what
/// `berserkr score` scores by default.
pub const SCORING_FEATURES: &str = "gold.scoring_features";
/// Gold's partition column: the instant a row's features are computed as of.
pub const CUTOFF_COLUMN: &str = "cutoff";
/// How a cutoff is written, in the tables and on the command line.
pub const CUTOFF_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
/// Days after a cutoff in which a purchase makes the label 1, when a table declares none.
pub const DEFAULT_LABEL_WINDOW_DAYS: i64 = 90;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// A table's name: `layer.name`, stored at `<lake>/<layer>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    /// `bronze`, `silver` or `gold`.
    pub layer: String,
    /// Name within the layer.
    pub name: String,
}

impl TableId {
    /// Path of the table below the lake root.
    pub fn path(&self) -> String {
        format!("{}/{}", self.layer, self.name)
    }
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.layer, self.name)
    }
}

impl FromStr for TableId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad =
            || Error::InvalidArgument(format!("table name {s:?} is not of the form layer.name"));
        let (layer, name) = s.split_once('.').ok_or_else(bad)?;
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !ok(layer) || !ok(name) {
            return Err(bad());
        }
        Ok(Self {
            layer: layer.to_string(),
            name: name.to_string(),
        })
    }
}

/// Column types a declaration may use (Delta's primitive type names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// UTF-8 text.
    String,
    /// 64-bit integer.
    Long,
    /// 32-bit integer.
    Integer,
    /// 64-bit float.
    Double,
    /// Boolean.
    Boolean,
    /// Bytes.
    Binary,
    /// Calendar date.
    Date,
    /// Instant, microseconds, UTC-adjusted.
    Timestamp,
    /// Wall-clock date and time without zone, microseconds.
    TimestampNtz,
}

impl ColumnType {
    /// The Delta type.
    pub fn delta(self) -> DataType {
        DataType::Primitive(match self {
            Self::String => PrimitiveType::String,
            Self::Long => PrimitiveType::Long,
            Self::Integer => PrimitiveType::Integer,
            Self::Double => PrimitiveType::Double,
            Self::Boolean => PrimitiveType::Boolean,
            Self::Binary => PrimitiveType::Binary,
            Self::Date => PrimitiveType::Date,
            Self::Timestamp => PrimitiveType::Timestamp,
            Self::TimestampNtz => PrimitiveType::TimestampNtz,
        })
    }

    /// The Arrow type delta-rs reads and writes for it.
    pub fn arrow(self) -> ArrowType {
        match self {
            Self::String => ArrowType::Utf8,
            Self::Long => ArrowType::Int64,
            Self::Integer => ArrowType::Int32,
            Self::Double => ArrowType::Float64,
            Self::Boolean => ArrowType::Boolean,
            Self::Binary => ArrowType::Binary,
            Self::Date => ArrowType::Date32,
            Self::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::TimestampNtz => ArrowType::Timestamp(TimeUnit::Microsecond, None),
        }
    }
}

/// What a column holds, for writers that fill tables generically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ColumnRole {
    /// An ordinary column.
    #[default]
    Data,
    /// A field of the drop, matched by header name or JSON key.
    Source,
    /// Fields of the drop the table does not know, as a JSON object.
    Rescued,
    /// URL of the drop a row came from.
    SourceFile,
    /// 1-based line of the drop where the row starts.
    SourceLine,
    /// sha256 of the drop's bytes.
    DropSha256,
    /// When the drop was ingested.
    IngestedAt,
    /// Why a line was rejected.
    Reason,
    /// A rejected line's raw bytes.
    Raw,
}

/// One column of a declaration or a migration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// Column type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Whether nulls are allowed (default true).
    #[serde(default = "yes")]
    pub nullable: bool,
    /// What the column holds.
    #[serde(default)]
    pub role: ColumnRole,
    /// Human description.
    #[serde(default)]
    pub comment: Option<String>,
    /// Whether Parquet files may dictionary-encode the column (default true). Off for columns
    /// whose values are mostly distinct: the writer interns each value of a row group until the
    /// dictionary outgrows its page and is abandoned; plain encoding skips that work.
    #[serde(default = "yes")]
    pub dictionary: bool,
    /// Parquet encoding of the values that are not dictionary-encoded (default: plain).
    #[serde(default)]
    pub encoding: ValueEncoding,
    /// Source columns: other header names (CSV) or keys (JSON lines) that fill this column, such
    /// as `Invoice` for `InvoiceNo` in the Online Retail II export. Recorded in the column's
    /// Delta metadata under [`ALIASES_KEY`].
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Source columns: a CSV drop whose header names neither the column nor an alias is refused
    /// at append (the tables built from it could not use its rows).
    #[serde(default)]
    pub required: bool,
}

/// The key of a column's Delta metadata that lists its [`ColumnSpec::aliases`] (a JSON array of
/// strings).
pub const ALIASES_KEY: &str = "berserkr.aliases";

/// How Parquet files encode a column's values outside a dictionary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueEncoding {
    /// Each value as is.
    #[default]
    Plain,
    /// Differences between consecutive values, bit-packed (integers and timestamps only): a
    /// counter such as a line number takes a few bits per value instead of eight bytes.
    /// Spark (3.3+), Trino, DuckDB and arrow-rs read it.
    DeltaBinaryPacked,
}

fn yes() -> bool {
    true
}

impl ColumnSpec {
    /// The Delta field (with its aliases in its metadata, when it has any).
    pub fn delta_field(&self) -> StructField {
        let field = StructField::new(self.name.clone(), self.ty.delta(), self.nullable);
        if self.aliases.is_empty() {
            return field;
        }
        field.with_metadata([(
            ALIASES_KEY.to_string(),
            deltalake::kernel::MetadataValue::Other(serde_json::json!(self.aliases)),
        )])
    }

    /// The Arrow field, with the metadata delta-rs gives the Delta field's (so batches built
    /// on it have the schema the table's writers expect).
    pub fn arrow_field(&self) -> ArrowField {
        let field = ArrowField::new(self.name.clone(), self.ty.arrow(), self.nullable);
        if self.aliases.is_empty() {
            return field;
        }
        field.with_metadata(
            [(
                ALIASES_KEY.to_string(),
                serde_json::json!(self.aliases).to_string(),
            )]
            .into(),
        )
    }
}

/// A named SQL check every row must pass (a Delta CHECK constraint).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintSpec {
    /// Constraint name.
    pub name: String,
    /// SQL boolean expression.
    pub expr: String,
}

/// What a refresh does with a row that violates an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectationAction {
    /// Keep the row, count the violation.
    Warn,
    /// Move the row to the quarantine table, with the rule's name.
    Drop,
    /// Stop the refresh; commit nothing.
    Fail,
}

/// A named data-quality rule: a SQL predicate every row should satisfy (NULL counts as false).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectationSpec {
    /// Rule name.
    pub name: String,
    /// SQL boolean expression over the typed row.
    pub expr: String,
    /// What to do with violating rows.
    pub action: ExpectationAction,
}

/// The declaration of one table (`tables/<layer>/<name>.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Layer.
    pub layer: String,
    /// Name.
    pub name: String,
    /// One-line description (the Delta table description).
    pub description: String,
    /// Partition columns.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// Table where lines that cannot be parsed go (bronze tables).
    #[serde(default)]
    pub rejects: Option<String>,
    /// Table this one is refreshed from, incrementally (silver tables).
    #[serde(default)]
    pub source: Option<String>,
    /// SQL file of `tables/` typing the source's new rows (registered as `bronze_new`).
    #[serde(default)]
    pub transform: Option<String>,
    /// Which typed rows belong in this table (a SQL predicate).
    #[serde(default)]
    pub filter: Option<String>,
    /// Keep one row of each set of identical rows, across refreshes too.
    #[serde(default)]
    pub dedupe: bool,
    /// A column every duplicate shares with its original (a deduplicated table's rows are
    /// equal in every column): the rows already in the table are searched for duplicates only
    /// within the new rows' range of it, which file and row-group statistics narrow down.
    #[serde(default)]
    pub dedupe_bounded_by: Option<String>,
    /// Where rows that fail a `drop` expectation go.
    #[serde(default)]
    pub quarantine: Option<String>,
    /// Data-quality expectations, checked on every typed source row before routing.
    #[serde(default)]
    pub expectations: Vec<ExpectationSpec>,
    /// Gold: days after a cutoff in which a purchase makes the label 1.
    #[serde(default)]
    pub label_window_days: Option<i64>,
    /// Delta table properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Columns in order.
    pub columns: Vec<ColumnSpec>,
    /// CHECK constraints.
    #[serde(default)]
    pub constraints: Vec<ConstraintSpec>,
}

impl TableSpec {
    /// The table's id.
    pub fn id(&self) -> TableId {
        TableId {
            layer: self.layer.clone(),
            name: self.name.clone(),
        }
    }

    /// The Arrow schema of the table's rows.
    pub fn arrow_schema(&self) -> Arc<ArrowSchema> {
        Arc::new(ArrowSchema::new(
            self.columns
                .iter()
                .map(ColumnSpec::arrow_field)
                .collect::<Vec<_>>(),
        ))
    }

    /// Days after a cutoff in which a purchase makes the label 1 (the declared
    /// `label_window_days`, else [`DEFAULT_LABEL_WINDOW_DAYS`]).
    pub fn label_window(&self) -> i64 {
        self.label_window_days.unwrap_or(DEFAULT_LABEL_WINDOW_DAYS)
    }

    /// Columns with the given role.
    pub fn columns_with(&self, role: ColumnRole) -> impl Iterator<Item = (usize, &ColumnSpec)> {
        self.columns
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.role == role)
    }
}

/// One migration step (`migrations/NNNN_slug.toml`): one Delta commit on one table.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Sequence number (NNNN), unique and increasing across all tables.
    pub seq: i64,
    /// File stem, e.g. `0001_create_bronze_online_retail`.
    pub name: String,
    /// sha256 of the file, recorded in the commit.
    pub sha256: String,
    /// The table it changes.
    pub table: TableId,
    /// What it does.
    pub op: MigrationOp,
}

/// The operations a migration step can perform.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum MigrationOp {
    /// Create the table.
    CreateTable {
        /// Table description.
        description: String,
        /// Partition columns.
        #[serde(default)]
        partition_by: Vec<String>,
        /// Delta table properties.
        #[serde(default)]
        properties: BTreeMap<String, String>,
        /// Columns.
        columns: Vec<ColumnSpec>,
    },
    /// Add nullable columns at the end.
    AddColumns {
        /// The new columns.
        columns: Vec<ColumnSpec>,
    },
    /// Set table properties.
    SetProperties {
        /// Properties to set.
        properties: BTreeMap<String, String>,
    },
    /// Add a CHECK constraint (existing rows must satisfy it).
    AddConstraint {
        /// Constraint name.
        name: String,
        /// SQL boolean expression.
        expr: String,
    },
    /// Set keys of one column's Delta metadata (other keys are kept; `delta.*` keys are
    /// Delta's own and refused).
    SetColumnMetadata {
        /// The column.
        column: String,
        /// Keys and their JSON values.
        metadata: BTreeMap<String, serde_json::Value>,
    },
}

#[derive(Deserialize)]
struct MigrationFile {
    table: String,
    #[serde(flatten)]
    op: MigrationOp,
}

/// Aliases and `required` are for source columns only, and every header name (a column's name
/// or alias) fills exactly one column.
fn check_source_names(spec: &TableSpec) -> std::result::Result<(), String> {
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for c in &spec.columns {
        if c.role != ColumnRole::Source {
            if !c.aliases.is_empty() || c.required {
                return Err(format!(
                    "column {}: aliases and required are for columns with role = \"source\"",
                    c.name
                ));
            }
            continue;
        }
        for n in std::iter::once(&c.name).chain(&c.aliases) {
            if n.trim() != n || n.is_empty() {
                return Err(format!(
                    "column {}: alias {n:?} is empty or has surrounding spaces (header names are trimmed)",
                    c.name
                ));
            }
            if let Some(other) = names.insert(n, &c.name) {
                return Err(format!(
                    "header name {n:?} would fill both {other} and {}",
                    c.name
                ));
            }
        }
    }
    Ok(())
}

/// Every table declaration and migration this build knows.
#[derive(Debug, Clone)]
pub struct Catalog {
    tables: BTreeMap<TableId, TableSpec>,
    migrations: Vec<Migration>,
    sql: BTreeMap<String, String>,
}

impl Catalog {
    /// The catalog embedded at build time.
    pub fn embedded() -> Result<Self> {
        Self::from_files(Self::embedded_files())
    }

    /// The files of `tables/` and `migrations/` embedded at build time: (path, contents).
    pub fn embedded_files() -> impl Iterator<Item = (&'static str, &'static str)> {
        embedded::EMBEDDED.iter().copied()
    }

    /// Builds a catalog from (path, contents) pairs laid out like the repository.
    pub fn from_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut tables = BTreeMap::new();
        let mut migrations = Vec::new();
        let mut sql = BTreeMap::new();
        for (path, text) in files {
            let bad = |message: String| Error::Catalog {
                file: path.to_string(),
                message,
            };
            if path.ends_with(".sql") {
                sql.insert(path.to_string(), text.to_string());
            } else if let Some(rest) = path.strip_prefix("tables/") {
                let spec: TableSpec = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
                let expected = format!("{}/{}.toml", spec.layer, spec.name);
                if rest != expected {
                    return Err(bad(format!(
                        "declares {} but should be at tables/{expected}",
                        spec.id()
                    )));
                }
                if let Some(c) = spec.columns.iter().find(|c| {
                    c.encoding == ValueEncoding::DeltaBinaryPacked
                        && !matches!(
                            c.ty,
                            ColumnType::Long
                                | ColumnType::Integer
                                | ColumnType::Date
                                | ColumnType::Timestamp
                                | ColumnType::TimestampNtz
                        )
                }) {
                    return Err(bad(format!(
                        "column {}: encoding = \"delta_binary_packed\" is for integer, date and timestamp columns",
                        c.name
                    )));
                }
                check_source_names(&spec).map_err(bad)?;
                if let Some(c) = &spec.dedupe_bounded_by {
                    // Rows whose bounding value is NULL would fall outside every range.
                    if !spec.dedupe || !spec.columns.iter().any(|x| &x.name == c && !x.nullable) {
                        return Err(bad(format!(
                            "dedupe_bounded_by = {c:?} needs dedupe = true and a column {c:?} with nullable = false"
                        )));
                    }
                }
                tables.insert(spec.id(), spec);
            } else if let Some(file) = path.strip_prefix("migrations/") {
                let stem = file.trim_end_matches(".toml");
                let seq = stem
                    .split_once('_')
                    .and_then(|(n, _)| n.parse::<i64>().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        bad("name must start with a positive number: NNNN_slug.toml".into())
                    })?;
                let parsed: MigrationFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
                let table = parsed
                    .table
                    .parse::<TableId>()
                    .map_err(|e| bad(e.to_string()))?;
                use sha2::Digest;
                let sha256 = hex::encode(sha2::Sha256::digest(text.as_bytes()));
                migrations.push(Migration {
                    seq,
                    name: stem.to_string(),
                    sha256,
                    table,
                    op: parsed.op,
                });
            }
        }
        migrations.sort_by_key(|m| m.seq);
        for w in migrations.windows(2) {
            if w[0].seq == w[1].seq {
                return Err(Error::Catalog {
                    file: format!("migrations/{}.toml", w[1].name),
                    message: format!("sequence number {} is used twice", w[1].seq),
                });
            }
        }
        Ok(Self {
            tables,
            migrations,
            sql,
        })
    }

    /// The declaration of a table.
    pub fn table(&self, id: &TableId) -> Result<&TableSpec> {
        self.tables.get(id).ok_or_else(|| Error::UnknownTable {
            table: id.to_string(),
        })
    }

    /// All declarations, by id.
    pub fn tables(&self) -> impl Iterator<Item = &TableSpec> {
        self.tables.values()
    }

    /// All migrations, in order.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The digest of a feature definition: SHA-256 of the transform's SQL (`path`), its first 16
    /// hex digits. Gold records it with every cutoff it writes and a model's manifest records
    /// the one it was trained on, so a model never scores features computed another way.
    pub fn definition(&self, path: &str) -> Result<String> {
        use sha2::Digest;
        let sql = self.sql(path)?;
        Ok(hex::encode(sha2::Sha256::digest(sql.as_bytes()))[..16].to_string())
    }

    /// A SQL file of `tables/` by its path, e.g. `tables/silver/transactions.sql`.
    pub fn sql(&self, path: &str) -> Result<&str> {
        self.sql
            .get(path)
            .map(String::as_str)
            .ok_or_else(|| Error::Catalog {
                file: path.to_string(),
                message: "no such SQL file in tables/".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_parses() {
        let c = Catalog::embedded().unwrap();
        let bronze = c.table(&"bronze.online_retail".parse().unwrap()).unwrap();
        assert_eq!(bronze.columns_with(ColumnRole::Source).count(), 8);
        assert!(!c.migrations().is_empty());
        assert!(c.migrations().windows(2).all(|w| w[0].seq < w[1].seq));
    }

    #[test]
    fn aliases_fill_one_column_each_and_only_source_columns() {
        let table = |extra: &str| {
            format!(
                "layer = \"bronze\"\nname = \"t\"\ndescription = \"t\"\n\
                 [[columns]]\nname = \"A\"\ntype = \"string\"\nrole = \"source\"\naliases = [\"Alpha\"]\n\
                 [[columns]]\nname = \"B\"\ntype = \"string\"\n{extra}\n"
            )
        };
        assert!(Catalog::from_files([("tables/bronze/t.toml", table("").as_str())]).is_ok());
        for (extra, why) in [
            (
                "role = \"source\"\naliases = [\"Alpha\"]",
                "would fill both A and B",
            ),
            (
                "role = \"source\"\naliases = [\"A\"]",
                "would fill both A and B",
            ),
            (
                "role = \"source\"\naliases = [\" Beta\"]",
                "surrounding spaces",
            ),
            ("aliases = [\"Beta\"]", "role = \"source\""),
            ("required = true", "role = \"source\""),
        ] {
            let e = Catalog::from_files([("tables/bronze/t.toml", table(extra).as_str())])
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{extra}: {e}");
        }
    }

    #[test]
    fn bronze_columns_silver_fails_without_are_required() {
        // A drop without a column that a `fail` expectation of silver needs would land rows that
        // stop every refresh: such columns must be declared required, so append refuses it.
        let c = Catalog::embedded().unwrap();
        let bronze = c.table(&BRONZE.parse().unwrap()).unwrap();
        for silver in c.tables().filter(|t| t.source.as_deref() == Some(BRONZE)) {
            for e in silver
                .expectations
                .iter()
                .filter(|e| e.action == ExpectationAction::Fail)
            {
                for (_, col) in bronze.columns_with(ColumnRole::Source) {
                    if e.expr.contains(col.name.as_str()) {
                        assert!(
                            col.required,
                            "{} is needed by {}'s expectation {} but not required",
                            col.name,
                            silver.id(),
                            e.name
                        );
                    }
                }
            }
        }
        let required: Vec<_> = bronze
            .columns
            .iter()
            .filter(|c| c.required)
            .map(|c| c.name.as_str())
            .collect();
        assert!(required.contains(&"InvoiceNo") && required.contains(&"StockCode"));
    }

    #[test]
    fn table_ids_are_validated() {
        assert!("bronze.online_retail".parse::<TableId>().is_ok());
        assert!("bronze".parse::<TableId>().is_err());
        assert!("Bronze.x".parse::<TableId>().is_err());
        assert!("bronze.".parse::<TableId>().is_err());
    }

    #[test]
    fn duplicate_sequence_numbers_are_rejected() {
        let m = "table = \"bronze.t\"\nop = \"set_properties\"\n[properties]\na = \"b\"\n";
        let err =
            Catalog::from_files([("migrations/0001_a.toml", m), ("migrations/0001_b.toml", m)])
                .unwrap_err();
        assert!(matches!(err, Error::Catalog { .. }), "{err}");
        assert!(err.to_string().contains("used twice"), "{err}");
    }

    #[test]
    fn a_dedupe_bound_must_be_a_non_null_column() {
        let table = |nullable: bool| {
            format!(
                "layer = \"silver\"\nname = \"t\"\ndescription = \"t\"\ndedupe = true\n\
                 dedupe_bounded_by = \"k\"\n[[columns]]\nname = \"k\"\ntype = \"string\"\n\
                 nullable = {nullable}\n"
            )
        };
        assert!(Catalog::from_files([("tables/silver/t.toml", table(false).as_str())]).is_ok());
        let err =
            Catalog::from_files([("tables/silver/t.toml", table(true).as_str())]).unwrap_err();
        assert!(matches!(err, Error::Catalog { .. }), "{err}");
        assert!(err.to_string().contains("nullable = false"), "{err}");
    }

    #[test]
    fn delta_encoding_is_only_for_integer_like_columns() {
        let table = |ty: &str| {
            format!(
                "layer = \"silver\"\nname = \"t\"\ndescription = \"t\"\n[[columns]]\n\
                 name = \"k\"\ntype = \"{ty}\"\nencoding = \"delta_binary_packed\"\n"
            )
        };
        for ty in ["long", "integer", "timestamp", "timestamp_ntz", "date"] {
            let c = Catalog::from_files([("tables/silver/t.toml", table(ty).as_str())]).unwrap();
            let t = c.table(&"silver.t".parse().unwrap()).unwrap();
            assert_eq!(t.columns[0].encoding, ValueEncoding::DeltaBinaryPacked);
        }
        for ty in ["string", "double", "boolean", "binary"] {
            let err =
                Catalog::from_files([("tables/silver/t.toml", table(ty).as_str())]).unwrap_err();
            assert!(
                err.to_string().contains("column k: encoding"),
                "{ty}: {err}"
            );
        }
    }
}
