//! JSON lines: one object per line. Keys are matched to the table's source columns; a string
//! value is stored unescaped, any other value as its JSON text exactly as written (so `2.50`
//! stays `2.50`), `null` as null. Unknown keys go to the rescued-data column. A key may be a
//! column's alias; a line with two keys for one column is rejected. A line in another declared
//! encoding is transcoded before it is parsed.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::{ChunkBuilder, ParseCtx};
use crate::error::Result;

/// Parses a chunk of complete lines; line numbers are relative to the chunk's first line.
pub(super) fn parse_chunk(ctx: &ParseCtx, text: &[u8]) -> Result<super::Parsed> {
    let mut b = ChunkBuilder::new(ctx, text.len());
    let layout = &ctx.layout;
    let mut values: Vec<Option<String>> = vec![None; layout.source_columns.len()];
    // The key (its position in the line's object) that filled each column in this line.
    let mut filled: Vec<Option<usize>> = vec![None; layout.source_columns.len()];
    for (this, raw) in (0u64..).zip(text.split_inclusive(|&c| c == b'\n')) {
        let body = raw.strip_suffix(b"\n").unwrap_or(raw);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let s: std::borrow::Cow<'_, str> = if ctx.encoding.is_utf8() {
            match std::str::from_utf8(body) {
                Ok(s) => s.into(),
                Err(e) => {
                    b.reject(
                        this,
                        format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                        body,
                    );
                    continue;
                }
            }
        } else {
            match ctx
                .encoding
                .encoding()
                .decode_without_bom_handling_and_without_replacement(body)
            {
                Some(s) => s,
                None => {
                    b.reject(this, format!("invalid {}", ctx.encoding), body);
                    continue;
                }
            }
        };
        let s = s.as_ref();
        let obj: BTreeMap<String, &RawValue> = match serde_json::from_str(s) {
            Ok(o) => o,
            Err(e) => {
                let reason = if s.trim_start().starts_with('{') {
                    format!("invalid JSON: {e}")
                } else {
                    "not a JSON object".to_string()
                };
                b.reject(this, reason, body);
                continue;
            }
        };
        values.iter_mut().for_each(|v| *v = None);
        filled.iter_mut().for_each(|f| *f = None);
        let mut rescued = String::new();
        let mut bad = None;
        for (k, (key, raw)) in obj.iter().enumerate() {
            match layout.source_index(key) {
                Some(c) => {
                    if let Some(other) = filled[c].replace(k) {
                        let other = obj.keys().nth(other).map_or("", String::as_str);
                        bad = Some(format!(
                            "keys {other} and {key} both fill column {}",
                            layout.source_name(c)
                        ));
                        break;
                    }
                    let text = raw.get();
                    values[c] = if text == "null" {
                        None
                    } else if text.starts_with('"') {
                        match serde_json::from_str::<String>(text) {
                            Ok(v) => Some(v),
                            Err(e) => {
                                bad = Some(format!("invalid JSON string for {key}: {e}"));
                                break;
                            }
                        }
                    } else {
                        Some(text.to_string())
                    };
                }
                None => {
                    rescued.push(if rescued.is_empty() { '{' } else { ',' });
                    rescued.push_str(&serde_json::Value::String(key.clone()).to_string());
                    rescued.push(':');
                    rescued.push_str(raw.get());
                }
            }
        }
        if let Some(reason) = bad {
            b.reject(this, reason, body);
            continue;
        }
        for (builder, v) in b.values.iter_mut().zip(&values) {
            builder.append_option(v.as_deref());
        }
        if rescued.is_empty() {
            b.rescued.append_null();
        } else {
            rescued.push('}');
            b.rescued.append_value(&rescued);
        }
        b.lines.push(this as i64);
    }
    let newlines = memchr::memchr_iter(b'\n', text).count() as u64;
    b.finish(text.len(), newlines)
}
