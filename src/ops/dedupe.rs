//! Exact-duplicate detection for deduplicated tables: which rows of a batch a table holds
//! already (or an earlier row of the same refresh brought).
//!
//! A row is remembered as a 128-bit hash (XXH3) of an encoding in which equal rows, NULLs
//! included, and only they, have equal bytes. Two different rows would be taken for duplicates
//! only if their hashes collided: for the 10^8 rows of a big table, a chance of about 10^-23.
//! The hashes are not stored anywhere: each refresh reads the rows it needs again.

use std::sync::Mutex;

use deltalake::arrow::array::{
    AsArray, BooleanArray, GenericByteArray, GenericByteViewArray, RecordBatch,
};
use deltalake::arrow::buffer::{Buffer, NullBuffer};
use deltalake::arrow::datatypes::{ByteArrayType, ByteViewType, DataType, SchemaRef};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::row::{RowConverter, SortField};

use crate::catalog::TableId;
use crate::error::{Error, Result};

/// Shards of the set, chosen by a hash's top bits. Each batch takes every shard's lock once,
/// so the refresh's partitions insert side by side instead of one after the other.
const SHARDS: usize = 256;

/// The rows a deduplicated table holds, as row hashes.
pub(crate) struct Seen {
    /// The row format of the table's columns, for a column type [`RowHasher`] does not read.
    fields: Vec<SortField>,
    shards: Vec<Mutex<Slots>>,
}

impl Seen {
    /// An empty set for rows of `schema`.
    pub(crate) fn new(schema: &SchemaRef) -> Self {
        Self {
            fields: schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Makes room for `rows` more rows at once (the set grows as needed anyway; growing
    /// rehashes every hash it holds).
    pub(crate) fn expect(&self, rows: u64) {
        // Hashes spread evenly over the shards; a little slack keeps the fuller ones from growing.
        let per_shard = rows as usize / SHARDS;
        let per_shard = per_shard + per_shard / 16 + 64;
        for shard in &self.shards {
            shard.lock().expect("dedupe shard").reserve(per_shard);
        }
    }

    /// Records the rows of `batch` (in the table's schema); true for each row not seen before
    /// (in this batch or earlier).
    pub(crate) fn insert(&self, batch: &RecordBatch, table: &TableId) -> Result<BooleanArray> {
        let hashes = self.hashes(batch).map_err(|source| Error::Arrow {
            context: format!("deduplicating rows of {table}"),
            source,
        })?;
        // Rows by shard, in row order within a shard (so the first of two equal rows of the
        // batch is the new one).
        let shard = |h: u128| (h >> 120) as usize;
        let mut start = vec![0usize; SHARDS + 1];
        for &h in &hashes {
            start[shard(h) + 1] += 1;
        }
        for s in 0..SHARDS {
            start[s + 1] += start[s];
        }
        let mut next = start.clone();
        let mut order = vec![0usize; hashes.len()];
        for (row, &h) in hashes.iter().enumerate() {
            order[next[shard(h)]] = row;
            next[shard(h)] += 1;
        }
        let mut new = vec![false; hashes.len()];
        for s in 0..SHARDS {
            let rows = &order[start[s]..start[s + 1]];
            if rows.is_empty() {
                continue;
            }
            let mut set = self.shards[s].lock().expect("dedupe shard");
            set.reserve(rows.len());
            // Load every slot the rows land in before inserting any: the loads are independent,
            // so their cache misses overlap instead of coming one after the other.
            std::hint::black_box(set.touch(rows.iter().map(|&r| hashes[r])));
            for &row in rows {
                new[row] = set.insert(hashes[row]);
            }
        }
        Ok(BooleanArray::from(new))
    }

    /// The hash of each row of `batch`.
    fn hashes(&self, batch: &RecordBatch) -> std::result::Result<Vec<u128>, ArrowError> {
        let hash = twox_hash::XxHash3_128::oneshot;
        match RowHasher::new(batch) {
            Some(rows) => {
                let mut buf = Vec::with_capacity(256);
                Ok((0..batch.num_rows())
                    .map(|row| {
                        buf.clear();
                        rows.encode(row, &mut buf);
                        hash(&buf)
                    })
                    .collect())
            }
            None => {
                // Arrow's row format: equal rows, and only they, encode to equal bytes.
                let converter = RowConverter::new(self.fields.clone())?;
                let rows = converter.convert_columns(batch.columns())?;
                Ok(rows.iter().map(|r| hash(r.as_ref())).collect())
            }
        }
    }
}

/// One column as [`RowHasher`] reads it.
enum Cells<'a> {
    /// Strings or binary values.
    Bytes(Box<dyn Fn(usize) -> &'a [u8] + 'a>),
    /// Fixed-width values: `width` bytes each, from `values` (the array's offset applied).
    Fixed { values: Buffer, width: usize },
    /// Booleans.
    Bool(&'a BooleanArray),
}

/// Encodes one row at a time: per column a null flag, then the value (a fixed-width value's
/// bytes; a variable-length value's length, then its bytes). Given the schema the encoding
/// reads back unambiguously, so equal rows, and only they, encode to equal bytes.
struct RowHasher<'a> {
    columns: Vec<(Option<&'a NullBuffer>, Cells<'a>)>,
}

impl<'a> RowHasher<'a> {
    /// None when a column's type is not one it reads (nested types, dictionaries).
    fn new(batch: &'a RecordBatch) -> Option<Self> {
        let columns = batch
            .columns()
            .iter()
            .map(|a| {
                let a = a.as_ref();
                let cells = match a.data_type() {
                    DataType::Utf8 => bytes(a.as_string::<i32>()),
                    DataType::LargeUtf8 => bytes(a.as_string::<i64>()),
                    DataType::Binary => bytes(a.as_binary::<i32>()),
                    DataType::LargeBinary => bytes(a.as_binary::<i64>()),
                    DataType::Utf8View => views(a.as_string_view()),
                    DataType::BinaryView => views(a.as_binary_view()),
                    DataType::Boolean => Cells::Bool(a.as_boolean()),
                    t if t.is_primitive() => {
                        let width = t.primitive_width()?;
                        let data = a.to_data();
                        let values = data
                            .buffers()
                            .first()?
                            .slice_with_length(data.offset() * width, data.len() * width);
                        Cells::Fixed { values, width }
                    }
                    _ => return None,
                };
                Some((a.nulls(), cells))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { columns })
    }

    fn encode(&self, row: usize, out: &mut Vec<u8>) {
        for (nulls, cells) in &self.columns {
            if nulls.is_some_and(|n| n.is_null(row)) {
                out.push(0);
                continue;
            }
            out.push(1);
            match cells {
                Cells::Bytes(value) => {
                    let v = value(row);
                    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                    out.extend_from_slice(v);
                }
                Cells::Fixed { values, width } => {
                    out.extend_from_slice(&values.as_slice()[row * width..(row + 1) * width]);
                }
                Cells::Bool(b) => out.push(u8::from(b.value(row))),
            }
        }
    }
}

/// The values of a string or binary array.
fn bytes<T: ByteArrayType>(a: &GenericByteArray<T>) -> Cells<'_> {
    Cells::Bytes(Box::new(move |i| a.value(i).as_ref()))
}

/// The values of a string or binary view array.
fn views<T: ByteViewType + ?Sized>(a: &GenericByteViewArray<T>) -> Cells<'_> {
    Cells::Bytes(Box::new(move |i| a.value(i).as_ref()))
}

/// A set of row hashes: open addressing with linear probing, each slot holding a hash itself
/// (0 marks an empty slot, so a hash of 0 is stored as 1: two rows are then mistaken for each
/// other with a chance of 2^-127, against the 2^-128 of any collision). A slot is read with one
/// memory access, where a general hash set reads its control bytes, then its bucket.
#[derive(Default)]
struct Slots {
    /// The slots (any number: a hash's slot is found by multiplying, not by masking, so the
    /// table is sized to what it must hold rather than to the next power of two, which cost up
    /// to twice the memory: 2.1 GB instead of 1.1 GB for a refresh of 50M rows), at most
    /// [`Slots::MAX_LOAD`] full.
    slots: Vec<u128>,
    len: usize,
}

impl Slots {
    /// Fullest the table gets, as a fraction (numerator, denominator) of its slots.
    const MAX_LOAD: (usize, usize) = (3, 4);

    /// The home slot of `h`: its low 64 bits scaled to the table's length (the shard was chosen
    /// by its top bits).
    fn index(&self, h: u128) -> usize {
        ((u128::from(h as u64) * self.slots.len() as u128) >> 64) as usize
    }

    /// Makes room for `more` hashes without growing again.
    fn reserve(&mut self, more: usize) {
        let need = self.len + more;
        let (num, den) = Self::MAX_LOAD;
        if need * den <= self.slots.len() * num {
            return;
        }
        // What `need` takes; when growing past an earlier size, at least half as much again, so
        // that growing batch by batch rehashes a bounded number of times.
        let size = (need * den / num + 1).max(64).max(self.slots.len() * 3 / 2);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        self.len = 0;
        for h in old.into_iter().filter(|&h| h != 0) {
            self.insert(h);
        }
    }

    /// Reads the slot of each hash (a value to discard, so the reads are not optimized away).
    fn touch(&self, hashes: impl Iterator<Item = u128>) -> u128 {
        if self.slots.is_empty() {
            return 0;
        }
        hashes.fold(0, |acc, h| acc ^ self.slots[self.index(h)])
    }

    /// Adds `h`; false when it was there already. Room must have been reserved.
    fn insert(&mut self, h: u128) -> bool {
        let h = h.max(1);
        let len = self.slots.len();
        let mut i = self.index(h);
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = h;
                    self.len += 1;
                    return true;
                }
                s if s == h => return false,
                _ => {
                    i += 1;
                    if i == len {
                        i = 0;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use deltalake::arrow::array::{
        ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int64Array, StringArray,
        StringViewArray, TimestampMicrosecondArray,
    };
    use deltalake::arrow::datatypes::{Field, Int32Type, Schema};

    use super::*;

    fn table() -> TableId {
        "silver.transactions".parse().unwrap()
    }

    fn batch(columns: Vec<ArrayRef>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    fn flags(seen: &Seen, b: &RecordBatch) -> Vec<bool> {
        seen.insert(b, &table())
            .unwrap()
            .iter()
            .map(Option::unwrap)
            .collect()
    }

    #[test]
    fn equal_rows_and_only_they_are_duplicates() {
        // Row 1 repeats row 0. The others differ in one way each: where a string splits (the
        // bytes between the two strings' values alike), a NULL against an empty string or a
        // zero, the sign of a zero, the timestamp alone.
        let a = StringArray::from(vec![
            Some("ab"),
            Some("ab"),
            Some("a\u{1}b"),
            Some("a"),
            None,
            Some(""),
            Some("x"),
            Some("x"),
            Some("x"),
            Some("ab"),
        ]);
        let b = StringArray::from(vec!["c", "c", "c", "b\u{1}c", "c", "c", "c", "c", "c", "c"]);
        let n = Int64Array::from(vec![
            Some(1),
            Some(1),
            Some(1),
            Some(1),
            Some(1),
            Some(1),
            None,
            Some(0),
            Some(0),
            Some(1),
        ]);
        let f = Float64Array::from(vec![0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, -0.0, 0.5]);
        let t =
            TimestampMicrosecondArray::from(vec![100, 100, 102, 102, 104, 105, 106, 107, 108, 109]);
        let v = StringViewArray::from(vec!["a long value past the inline twelve"; 10]);
        let on = BooleanArray::from(vec![true; 10]);
        let b = batch(vec![
            Arc::new(a),
            Arc::new(b),
            Arc::new(n),
            Arc::new(f),
            Arc::new(t),
            Arc::new(v),
            Arc::new(on),
        ]);
        let seen = Seen::new(&b.schema());
        let mut expected = [true; 10];
        expected[1] = false;
        assert_eq!(flags(&seen, &b), expected);
        // Again, as a slice (arrays with an offset): every row is there already.
        assert_eq!(flags(&seen, &b.slice(2, 8)), [false; 8]);
        // A row differing in the last column only is new.
        let mut other = b.slice(0, 1).columns().to_vec();
        other[6] = Arc::new(BooleanArray::from(vec![false]));
        assert_eq!(flags(&seen, &batch(other)), [true]);
    }

    /// For each row, the first row whose hash equals its own.
    fn classes(hashes: &[u128]) -> Vec<usize> {
        let mut first = HashMap::new();
        (0..hashes.len())
            .map(|i| *first.entry(hashes[i]).or_insert(i))
            .collect()
    }

    #[test]
    fn rows_are_equal_exactly_when_arrow_row_format_says_so() {
        // Small domains, so that many rows repeat; NULLs in every column.
        let n = 3000;
        let pick = |i: usize, m: usize| (i.wrapping_mul(2654435761) >> 7) % m;
        let s = StringArray::from_iter((0..n).map(|i| match pick(i, 5) {
            0 => None,
            k => Some(["", "a", "ab", "abc"][k - 1]),
        }));
        let t = StringArray::from_iter((0..n).map(|i| match pick(i + 7, 4) {
            0 => None,
            k => Some(["", "c", "bc"][k - 1]),
        }));
        let q =
            Int64Array::from_iter((0..n).map(|i| (pick(i + 3, 4) != 0).then(|| pick(i, 3) as i64)));
        let p = Float64Array::from_iter(
            (0..n).map(|i| (pick(i + 5, 5) != 0).then(|| [0.0, -0.0, 1.5][pick(i + 1, 3)])),
        );
        let b = batch(vec![Arc::new(s), Arc::new(t), Arc::new(q), Arc::new(p)]);
        let seen = Seen::new(&b.schema());
        let ours = seen.hashes(&b).unwrap();
        let converter = RowConverter::new(seen.fields.clone()).unwrap();
        let rows = converter.convert_columns(b.columns()).unwrap();
        let mut first = HashMap::new();
        let reference: Vec<usize> = (0..n)
            .map(|i| *first.entry(rows.row(i).as_ref().to_vec()).or_insert(i))
            .collect();
        assert_eq!(classes(&ours), reference);
        assert!(
            first.len() > 50 && first.len() < n / 2,
            "{} classes",
            first.len()
        );
    }

    #[test]
    fn other_column_types_go_through_arrow_row_format() {
        let d: DictionaryArray<Int32Type> = vec!["x", "y", "x", "x"].into_iter().collect();
        let n = Int64Array::from(vec![1, 1, 1, 2]);
        let b = batch(vec![Arc::new(d), Arc::new(n)]);
        assert!(RowHasher::new(&b).is_none());
        let seen = Seen::new(&b.schema());
        assert_eq!(flags(&seen, &b), [true, true, false, true]);
    }

    #[test]
    fn slots_hold_each_hash_once_through_growth_and_collisions() {
        let mut slots = Slots::default();
        let mut reference = std::collections::HashSet::new();
        // Hashes sharing their low bits collide into one run of slots; 0 and 1 are one hash.
        let mut x = 0x9e37_79b9_7f4a_7c15u128;
        let hashes: Vec<u128> = (0..20_000u128)
            .map(|i| {
                x = x.wrapping_mul(0x2545_f491_4f6c_dd1d).wrapping_add(i);
                match i % 5 {
                    0 => x << 64,            // low bits all zero
                    1 => (x >> 100) % 3_000, // small: many repeats
                    _ => x,
                }
            })
            .chain([0, 1, 0, 2])
            .collect();
        for chunk in hashes.chunks(777) {
            slots.reserve(chunk.len());
            std::hint::black_box(slots.touch(chunk.iter().copied()));
            for &h in chunk {
                assert_eq!(slots.insert(h), reference.insert(h.max(1)), "{h}");
            }
            let (num, den) = Slots::MAX_LOAD;
            assert!(slots.len * den <= slots.slots.len() * num);
        }
        assert_eq!(slots.len, reference.len());
        assert_eq!(
            slots.slots.iter().filter(|&&h| h != 0).count(),
            reference.len()
        );
    }

    #[test]
    fn a_set_sized_for_its_rows_does_not_grow() {
        let b = batch(vec![Arc::new(Int64Array::from_iter_values(0..50_000))]);
        let seen = Seen::new(&b.schema());
        seen.expect(50_000);
        let sizes = |s: &Seen| -> Vec<usize> {
            s.shards
                .iter()
                .map(|x| x.lock().unwrap().slots.len())
                .collect()
        };
        let before = sizes(&seen);
        // Sized to the rows, not rounded up to a power of two.
        let per_shard = 50_000 / SHARDS + 50_000 / SHARDS / 16 + 64;
        assert!(
            before.iter().all(|&n| n == per_shard * 4 / 3 + 1),
            "{before:?}"
        );
        assert!(flags(&seen, &b).iter().all(|&f| f));
        assert_eq!(sizes(&seen), before);
        assert!(flags(&seen, &b).iter().all(|&f| !f));
    }
}
