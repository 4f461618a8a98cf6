//! Applies the migrations of `migrations/` to the lake, each as one Delta commit.
//!
//! Every step commits with the application transaction ([`MIGRATIONS_APP_ID`], its sequence
//! number) and its name and file hash in the commit metadata, so the table's own log says which
//! steps it has: a second `lake init` reads that and does nothing.

use std::collections::{BTreeMap, HashMap};

use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{MetadataValue, Transaction};
use serde::Serialize;
use serde_json::json;

use crate::catalog::{Migration, MigrationOp, TableId};
use crate::error::{Error, Result};
use crate::lake::{Lakehouse, MIGRATIONS_APP_ID, manifest, migration_level, operation};

/// Delta table properties that other Delta engines act on and delta-rs does not know: a migration
/// may set them (anything else under `delta.` must be a key delta-rs knows, so a typo fails).
const OTHER_ENGINES_DELTA_KEYS: [&str; 1] = [manifest::MANIFEST_PROPERTY];

/// One migration applied by [`Lakehouse::init`].
#[derive(Debug, Clone, Serialize)]
pub struct AppliedMigration {
    /// File stem.
    pub name: String,
    /// Table changed.
    pub table: String,
    /// Table version the step committed.
    pub version: u64,
}

/// What `lake init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    /// Steps applied now, in order (empty when the lake was up to date).
    pub applied: Vec<AppliedMigration>,
    /// Every declared table with its version after init.
    pub tables: BTreeMap<String, u64>,
}

/// Builder for `lake init` (see [`Lakehouse::init`]).
pub struct InitBuilder {
    lake: Lakehouse,
}

impl Lakehouse {
    /// Applies every pending migration, in order, and checks every declared table exists.
    pub fn init(&self) -> InitBuilder {
        InitBuilder { lake: self.clone() }
    }
}

impl InitBuilder {
    async fn execute(self) -> Result<InitReport> {
        let this = &self.lake;
        let mut open: HashMap<TableId, (DeltaTable, i64)> = HashMap::new();
        let mut applied = Vec::new();
        for m in this.catalog().migrations() {
            if !open.contains_key(&m.table) {
                let table = this.uninitialized_table(&m.table).await?;
                let level = if table.version().is_some() {
                    migration_level(&table, &m.table).await?
                } else {
                    0
                };
                open.insert(m.table.clone(), (table, level));
            }
            let (table, level) = open.remove(&m.table).expect("inserted above");
            if m.seq <= level {
                open.insert(m.table.clone(), (table, level));
                continue;
            }
            let table = apply_one(table, m).await?;
            let version = table.version().unwrap_or(0);
            applied.push(AppliedMigration {
                name: m.name.clone(),
                table: m.table.to_string(),
                version,
            });
            open.insert(m.table.clone(), (table, m.seq));
        }
        let mut tables = BTreeMap::new();
        for spec in this.catalog().tables() {
            let id = spec.id();
            let version = match open.get(&id) {
                Some((t, _)) => t.version(),
                None => None,
            };
            let Some(version) = version else {
                return Err(Error::Catalog {
                    file: format!("tables/{}.toml", id.path()),
                    message: "declared, but no migration creates it".into(),
                });
            };
            tables.insert(id.to_string(), version);
        }
        // A table whose migrations just asked for manifests gets them now, not at its next
        // commit.
        for (id, (table, _)) in &open {
            if applied.iter().any(|a| a.table == id.to_string()) {
                let state = table.snapshot().map_err(|e| Error::delta(id, e))?;
                manifest::write_if_enabled(id, &table.log_store(), state).await?;
            }
        }
        Ok(InitReport { applied, tables })
    }
}
operation!(InitBuilder => InitReport);

fn commit_properties(m: &Migration) -> CommitProperties {
    CommitProperties::default()
        .with_application_transaction(Transaction::new(MIGRATIONS_APP_ID, m.seq))
        .with_metadata([(
            "berserkr.migration".to_string(),
            json!({ "seq": m.seq, "name": m.name, "sha256": m.sha256 }),
        )])
}

async fn apply_one(table: DeltaTable, m: &Migration) -> Result<DeltaTable> {
    let fail = |message: String| Error::Migration {
        migration: m.name.clone(),
        table: m.table.to_string(),
        message,
    };
    let exists = table.version().is_some();
    let props = commit_properties(m);
    let result = match &m.op {
        MigrationOp::CreateTable {
            description,
            partition_by,
            properties,
            columns,
        } => {
            if exists {
                return Err(fail(
                    "the table exists but its log has no berserkr migrations: it was not created by berserkr".into(),
                ));
            }
            table
                .create()
                .with_table_name(m.table.to_string())
                .with_comment(description.clone())
                .with_columns(columns.iter().map(|c| c.delta_field()))
                .with_partition_columns(partition_by.clone())
                .with_configuration(properties.iter().map(|(k, v)| (k.clone(), Some(v.clone()))))
                .with_commit_properties(props)
                .await
        }
        _ if !exists => return Err(fail("the table does not exist yet".into())),
        MigrationOp::AddColumns { columns } => {
            if let Some(c) = columns.iter().find(|c| !c.nullable) {
                return Err(fail(format!(
                    "column {} must be nullable: existing rows have no value for it",
                    c.name
                )));
            }
            let fields: Vec<_> = columns.iter().map(|c| c.delta_field()).collect();
            table
                .add_columns()
                .with_fields(fields)
                .with_commit_properties(props)
                .await
        }
        MigrationOp::SetProperties { properties } => {
            table
                .set_tbl_properties()
                .with_properties(properties.clone().into_iter().collect())
                // Delta's own keys must be ones delta-rs knows (a typo is an error); berserkr's
                // (`berserkr.autoCompact.minFiles`) and other engines' are kept as they are.
                .with_raise_if_not_exists(properties.keys().all(|k| {
                    k.starts_with("delta.") && !OTHER_ENGINES_DELTA_KEYS.contains(&k.as_str())
                }))
                .with_commit_properties(props)
                .await
        }
        MigrationOp::AddConstraint { name, expr } => {
            table
                .add_constraint()
                .with_constraint(name.clone(), expr.clone())
                .with_commit_properties(props)
                .await
        }
        MigrationOp::SetColumnMetadata { column, metadata } => {
            if let Some(k) = metadata.keys().find(|k| k.starts_with("delta.")) {
                return Err(fail(format!(
                    "metadata key {k} is Delta's own: a migration may not set it"
                )));
            }
            let metadata = metadata
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => MetadataValue::String(s.clone()),
                        serde_json::Value::Bool(b) => MetadataValue::Boolean(*b),
                        v => MetadataValue::Other(v.clone()),
                    };
                    (k.clone(), v)
                })
                .collect();
            table
                .update_field_metadata()
                .with_field_name(column)
                .with_metadata(metadata)
                .with_commit_properties(props)
                .await
        }
    };
    result.map_err(|e| fail(e.to_string()))
}
