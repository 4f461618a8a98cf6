//! Where a drop's fields and lineage go in a bronze table and its rejects table, derived from
//! the declarations' column roles.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BinaryArray, Int64Array, StringArray, TimestampMicrosecondArray, new_null_array,
};
use deltalake::arrow::datatypes::{Field, SchemaRef};
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
    /// Header names and keys (column names and their aliases) → index among source columns.
    by_name: HashMap<String, usize>,
    /// For each source column, its aliases.
    aliases: Vec<Vec<String>>,
    /// Indexes (among source columns) of the columns a CSV header must name.
    required: Vec<usize>,
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
        let specs: Vec<_> = bronze
            .columns_with(ColumnRole::Source)
            .map(|(_, c)| c)
            .collect();
        let mut by_name = HashMap::new();
        for (k, c) in specs.iter().enumerate() {
            for n in std::iter::once(&c.name).chain(&c.aliases) {
                if by_name.insert(n.clone(), k).is_some() {
                    return Err(Error::Catalog {
                        file: format!("tables/{}.toml", bronze.id().path()),
                        message: format!("header name {n:?} fills two columns"),
                    });
                }
            }
        }
        let aliases = specs.iter().map(|c| c.aliases.clone()).collect();
        let required = (0..specs.len()).filter(|&k| specs[k].required).collect();
        Ok(Self {
            bronze_schema: bronze.arrow_schema(),
            rejects_schema: rejects.arrow_schema(),
            source_columns,
            by_name,
            aliases,
            required,
            bronze_roles: bronze.columns.iter().map(|c| c.role).collect(),
            rejects_roles: rejects.columns.iter().map(|c| c.role).collect(),
        })
    }

    /// Index (among source columns) of the column a header name or JSON key (the column's
    /// name or one of its aliases) fills.
    pub fn source_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Name of the source column at `index` (among source columns).
    pub fn source_name(&self, index: usize) -> &str {
        &self.source_columns[index].0
    }

    /// The source column at `index` with its aliases, for messages: `UnitPrice (or Price)`.
    pub(super) fn described(&self, index: usize) -> String {
        let name = self.source_name(index);
        match self.aliases[index].as_slice() {
            [] => name.to_string(),
            a => format!("{name} (or {})", a.join(" or ")),
        }
    }

    /// Indexes (among source columns) of the columns a CSV header must name.
    pub(super) fn required(&self) -> &[usize] {
        &self.required
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

    /// The column of a lineage role for rows at `lines` (None for other roles).
    fn lineage(role: ColumnRole, lines: &[i64], meta: &DropMeta) -> Result<Option<ArrayRef>> {
        let n = lines.len();
        Ok(Some(match role {
            ColumnRole::SourceFile => Arc::new(repeated(&meta.file, n, meta)?),
            ColumnRole::SourceLine => Arc::new(Int64Array::from(lines.to_vec())),
            ColumnRole::DropSha256 => Arc::new(repeated(&meta.sha256, n, meta)?),
            ColumnRole::IngestedAt => Arc::new(
                TimestampMicrosecondArray::from(vec![meta.ingested_at_us; n]).with_timezone("UTC"),
            ),
            _ => return Ok(None),
        }))
    }

    /// The lineage column of `role`, or NULLs for a role no column of this kind fills.
    fn lineage_or_null(
        role: ColumnRole,
        lines: &[i64],
        meta: &DropMeta,
        field: &Field,
    ) -> Result<ArrayRef> {
        Ok(Self::lineage(role, lines, meta)?
            .unwrap_or_else(|| new_null_array(field.data_type(), lines.len())))
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
                ColumnRole::Source => Ok(values.next().expect("one value array per source column")),
                ColumnRole::Rescued => Ok(rescued.clone()),
                r => Self::lineage_or_null(r, lines, meta, self.bronze_schema.field(i)),
            })
            .collect::<Result<_>>()?;
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
                    Ok(Arc::new(StringArray::from_iter_values(reasons.iter())) as ArrayRef)
                }
                ColumnRole::Raw => Ok(Arc::new(BinaryArray::from_iter_values(raw.iter())) as _),
                r => Self::lineage_or_null(r, lines, meta, self.rejects_schema.field(i)),
            })
            .collect::<Result<_>>()?;
        RecordBatch::try_new(self.rejects_schema.clone(), columns).map_err(|source| Error::Arrow {
            context: format!("rejects of {}", meta.file),
            source,
        })
    }
}

/// `value`, `n` times (Arrow's `new_repeated`: one buffer of exactly their size). A column of a
/// batch addresses at most 2 GiB (32-bit offsets): past that, an error naming the drop, where
/// Arrow would panic.
fn repeated(value: &str, n: usize, meta: &DropMeta) -> Result<StringArray> {
    if value
        .len()
        .checked_mul(n)
        .is_none_or(|total| total > i32::MAX as usize)
    {
        return Err(Error::BadDrop {
            file: meta.file.clone(),
            message: format!(
                "a lineage value of {} bytes on {n} rows is more than a column of a batch holds (2 GiB)",
                value.len()
            ),
        });
    }
    Ok(StringArray::new_repeated(value, n))
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::Array;

    use super::*;

    fn meta() -> DropMeta {
        DropMeta {
            file: "file:///drops/2011-12-09.csv.lzo".into(),
            sha256: "ab".repeat(32),
            ingested_at_us: 0,
        }
    }

    #[test]
    fn repeated_values_are_each_the_value() {
        let m = meta();
        for n in [0, 1, 3, 1000] {
            let a = repeated(&m.file, n, &m).unwrap();
            assert_eq!(a.len(), n);
            assert!(a.iter().all(|v| v == Some(m.file.as_str())));
        }
        assert_eq!(repeated("", 5, &m).unwrap().iter().flatten().count(), 5);
    }

    #[test]
    fn a_column_past_32_bit_offsets_is_an_error_not_a_panic() {
        let m = meta();
        // 1 MiB × 4,096 rows = 4 GiB: refused before any byte is copied.
        let long = "x".repeat(1 << 20);
        let e = repeated(&long, 4096, &m).unwrap_err().to_string();
        assert!(
            e.contains("2011-12-09.csv.lzo") && e.contains("2 GiB"),
            "{e}"
        );
    }
}
