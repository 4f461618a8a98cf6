//! Where a drop's fields and lineage go in a bronze table and its rejects table, derived from
//! the declarations' column roles.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BinaryArray, Int64Array, StringArray, TimestampMicrosecondArray, new_null_array,
};
use deltalake::arrow::buffer::{Buffer, OffsetBuffer};
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;

use super::DropMeta;
use crate::catalog::{ColumnRole, TableSpec};
use crate::error::{Error, Result};

/// How drop rows map onto a bronze table and its rejects table.
#[derive(Debug)]
pub struct DropLayout {
    bronze_schema: SchemaRef,
    rejects_schema: SchemaRef,
    /// Source columns: (name, position in the bronze schema).
    pub(super) source_columns: Vec<(String, usize)>,
    by_name: HashMap<String, usize>,
    bronze_roles: Vec<ColumnRole>,
    rejects_roles: Vec<ColumnRole>,
}

impl DropLayout {
    /// The layout of `bronze` (which must have source and lineage columns) and `rejects`.
    pub fn new(bronze: &TableSpec, rejects: &TableSpec) -> Result<Self> {
        let need = |spec: &TableSpec, role: ColumnRole| {
            if spec.columns_with(role).count() != 1 {
                return Err(Error::Catalog {
                    file: format!("tables/{}.toml", spec.id().path()),
                    message: format!("needs exactly one column with role {role:?}"),
                });
            }
            Ok(())
        };
        for role in [
            ColumnRole::SourceFile,
            ColumnRole::SourceLine,
            ColumnRole::DropSha256,
            ColumnRole::IngestedAt,
        ] {
            need(bronze, role)?;
            need(rejects, role)?;
        }
        need(bronze, ColumnRole::Rescued)?;
        need(rejects, ColumnRole::Reason)?;
        need(rejects, ColumnRole::Raw)?;
        let source_columns: Vec<(String, usize)> = bronze
            .columns_with(ColumnRole::Source)
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        if source_columns.is_empty() {
            return Err(Error::Catalog {
                file: format!("tables/{}.toml", bronze.id().path()),
                message: "has no column with role source".into(),
            });
        }
        let by_name = source_columns
            .iter()
            .enumerate()
            .map(|(k, (n, _))| (n.clone(), k))
            .collect();
        Ok(Self {
            bronze_schema: bronze.arrow_schema(),
            rejects_schema: rejects.arrow_schema(),
            source_columns,
            by_name,
            bronze_roles: bronze.columns.iter().map(|c| c.role).collect(),
            rejects_roles: rejects.columns.iter().map(|c| c.role).collect(),
        })
    }

    /// Index (among source columns) of the column a header name or JSON key fills.
    pub fn source_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Names of the source columns, in table order.
    pub fn source_names(&self) -> Vec<&str> {
        self.source_columns
            .iter()
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Arrow schema of the bronze table.
    pub fn bronze_schema(&self) -> &SchemaRef {
        &self.bronze_schema
    }

    /// Arrow schema of the rejects table.
    pub fn rejects_schema(&self) -> &SchemaRef {
        &self.rejects_schema
    }

    fn lineage(role: ColumnRole, lines: &[i64], meta: &DropMeta) -> Option<ArrayRef> {
        let n = lines.len();
        Some(match role {
            ColumnRole::SourceFile => Arc::new(repeated(&meta.file, n)),
            ColumnRole::SourceLine => Arc::new(Int64Array::from(lines.to_vec())),
            ColumnRole::DropSha256 => Arc::new(repeated(&meta.sha256, n)),
            ColumnRole::IngestedAt => Arc::new(
                TimestampMicrosecondArray::from(vec![meta.ingested_at_us; n]).with_timezone("UTC"),
            ),
            _ => return None,
        })
    }

    /// Assembles a bronze batch from the source columns' values (in source order).
    pub(super) fn bronze_batch(
        &self,
        values: Vec<ArrayRef>,
        rescued: ArrayRef,
        lines: &[i64],
        meta: &DropMeta,
    ) -> Result<RecordBatch> {
        let mut values = values.into_iter();
        let columns: Vec<ArrayRef> = self
            .bronze_roles
            .iter()
            .enumerate()
            .map(|(i, &role)| match role {
                ColumnRole::Source => values.next().expect("one value array per source column"),
                ColumnRole::Rescued => rescued.clone(),
                r => Self::lineage(r, lines, meta).unwrap_or_else(|| {
                    new_null_array(self.bronze_schema.field(i).data_type(), lines.len())
                }),
            })
            .collect();
        RecordBatch::try_new(self.bronze_schema.clone(), columns).map_err(|source| Error::Arrow {
            context: format!("bronze rows of {}", meta.file),
            source,
        })
    }

    /// Assembles a rejects batch.
    pub(super) fn rejects_batch(
        &self,
        lines: &[i64],
        reasons: &[String],
        raw: &[Vec<u8>],
        meta: &DropMeta,
    ) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self
            .rejects_roles
            .iter()
            .enumerate()
            .map(|(i, &role)| match role {
                ColumnRole::Reason => {
                    Arc::new(StringArray::from_iter_values(reasons.iter())) as ArrayRef
                }
                ColumnRole::Raw => Arc::new(BinaryArray::from_iter_values(raw.iter())),
                r => Self::lineage(r, lines, meta).unwrap_or_else(|| {
                    new_null_array(self.rejects_schema.field(i).data_type(), lines.len())
                }),
            })
            .collect();
        RecordBatch::try_new(self.rejects_schema.clone(), columns).map_err(|source| Error::Arrow {
            context: format!("rejects of {}", meta.file),
            source,
        })
    }
}

/// `value`, `n` times: its bytes copied once into a buffer of exactly their size.
fn repeated(value: &str, n: usize) -> StringArray {
    let len = value.len();
    match n
        .checked_mul(len)
        .filter(|&total| i32::try_from(total).is_ok())
    {
        Some(_) => StringArray::new(
            OffsetBuffer::from_lengths(std::iter::repeat_n(len, n)),
            Buffer::from(value.repeat(n).into_bytes()),
            None,
        ),
        // Past what 32-bit offsets address. A chunk of at most 3 MiB holds at most ~400,000
        // rows, so only a file name of over 5 KB gets here.
        None => StringArray::from_iter_values(std::iter::repeat_n(value, n)),
    }
}
