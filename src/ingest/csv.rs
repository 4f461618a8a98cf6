//! Strict RFC 4180 CSV: `,` separates fields, `"` quotes them, `""` is a quote inside quotes,
//! records end with `\n` or `\r\n` and may span lines inside quotes.
//!
//! Strict means a quote inside an unquoted field, text after a closing quote, an unterminated
//! quote and a wrong number of fields are all rejects, not guesses: bronze must hold what the
//! drop said, and a lenient parser would silently change it.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use super::{ChunkBuilder, DropLayout, MAX_RECORD_BYTES, ParseCtx};
use crate::config::TextEncoding;
use crate::error::Result;

/// End (exclusive, after the newline) of the first record of `buf`, quote-aware. At end of
/// input a last record without newline ends at the end of `buf`.
pub(super) fn record_end(buf: &[u8], eof: bool) -> Option<usize> {
    let mut in_quotes = false;
    for i in memchr::memchr2_iter(b'"', b'\n', buf) {
        match buf[i] {
            b'"' => in_quotes = !in_quotes,
            _ if !in_quotes => return Some(i + 1),
            _ => {}
        }
    }
    (eof && !buf.is_empty()).then_some(buf.len())
}

/// End of the last complete record in `buf`, which starts at a record boundary.
///
/// A newline ends a record when an even number of quotes precede it (an escaped `""` counts
/// twice, so the parity of the count is the quoting state in valid CSV).
pub(super) fn last_boundary(buf: &[u8]) -> Option<usize> {
    let total = memchr::memchr_iter(b'"', buf).count();
    let mut after = 0usize; // quotes at or after the candidate newline
    let mut end = buf.len();
    while let Some(nl) = memchr::memrchr(b'\n', &buf[..end]) {
        after += memchr::memchr_iter(b'"', &buf[nl..end]).count();
        if (total - after).is_multiple_of(2) {
            return Some(nl + 1);
        }
        end = nl;
    }
    None
}

/// Why a record could not be split into fields.
enum Fault {
    /// Reached the end of the text inside a quoted field.
    Unterminated,
    /// Something other than a separator after a closing quote, at this offset.
    AfterQuote(usize),
    /// A quote inside an unquoted field, at this offset.
    QuoteInField(usize),
}

/// A field: byte range in the text, and whether it holds `""` escapes.
#[derive(Clone, Copy)]
struct Field {
    start: usize,
    end: usize,
    escaped: bool,
}

/// Splits the record starting at `p` into `fields`; returns the offset after its terminator and
/// the number of newlines inside its quoted fields.
fn split_record(text: &[u8], mut p: usize, fields: &mut Vec<Field>) -> Result<(usize, u64), Fault> {
    fields.clear();
    let n = text.len();
    let mut quoted_newlines = 0u64;
    loop {
        if p < n && text[p] == b'"' {
            let start = p + 1;
            let mut q = start;
            let mut escaped = false;
            let end = loop {
                match memchr::memchr(b'"', &text[q..]) {
                    None => return Err(Fault::Unterminated),
                    Some(i) => {
                        let at = q + i;
                        if text.get(at + 1) == Some(&b'"') {
                            escaped = true;
                            q = at + 2;
                        } else {
                            break at;
                        }
                    }
                }
            };
            fields.push(Field {
                start,
                end,
                escaped,
            });
            quoted_newlines += memchr::memchr_iter(b'\n', &text[start..end]).count() as u64;
            p = end + 1;
            match text.get(p) {
                None => return Ok((n, quoted_newlines)),
                Some(b',') => p += 1,
                Some(b'\n') => return Ok((p + 1, quoted_newlines)),
                Some(b'\r') if text.get(p + 1) == Some(&b'\n') => {
                    return Ok((p + 2, quoted_newlines));
                }
                Some(b'\r') if p + 1 == n => return Ok((n, quoted_newlines)),
                Some(_) => return Err(Fault::AfterQuote(p)),
            }
        } else {
            let (end, next) = match memchr::memchr3(b',', b'\n', b'"', &text[p..]) {
                None => (n, None),
                Some(i) => (p + i, Some(text[p + i])),
            };
            match next {
                Some(b'"') => return Err(Fault::QuoteInField(end)),
                Some(b',') => {
                    fields.push(Field {
                        start: p,
                        end,
                        escaped: false,
                    });
                    p = end + 1;
                }
                _ => {
                    // End of record: drop the '\r' of a CRLF line ending.
                    let e = if end > p && text[end - 1] == b'\r' {
                        end - 1
                    } else {
                        end
                    };
                    fields.push(Field {
                        start: p,
                        end: e,
                        escaped: false,
                    });
                    return Ok((if next.is_some() { end + 1 } else { n }, quoted_newlines));
                }
            }
        }
    }
}

/// A drop's header: what each field fills, and the columns filled through an alias.
pub(super) struct Header {
    /// For each field, its name and the source column it fills (None: rescued data).
    pub fields: Vec<(String, Option<usize>)>,
    /// Column → the header name that filled it, where that was an alias.
    pub aliased: BTreeMap<String, String>,
}

/// Reads the header record (in the drop's `encoding`): each name mapped to the table's source
/// column of that name or alias. Every required column must be named, and none twice.
pub(super) fn parse_header(
    rec: &[u8],
    layout: &DropLayout,
    encoding: TextEncoding,
) -> Result<Header, String> {
    let mut fields = Vec::new();
    split_record(rec, 0, &mut fields).map_err(|f| {
        format!(
            "header line: {}",
            match f {
                Fault::Unterminated => "unterminated quote".to_string(),
                Fault::AfterQuote(at) => format!("text after a closing quote at byte {at}"),
                Fault::QuoteInField(at) => format!("quote inside an unquoted field at byte {at}"),
            }
        )
    })?;
    let mut seen = HashMap::new();
    let mut filled: HashMap<usize, (usize, String)> = HashMap::new();
    let mut header = Vec::with_capacity(fields.len());
    let mut aliased = BTreeMap::new();
    for (i, f) in fields.iter().enumerate() {
        let raw = unescape(&rec[f.start..f.end], f.escaped);
        let name = encoding
            .encoding()
            .decode_without_bom_handling_and_without_replacement(&raw)
            .ok_or_else(|| format!("header field {} is not valid {encoding}", i + 1))?
            .trim()
            .to_string();
        if name.is_empty() {
            return Err(format!("header field {} is empty", i + 1));
        }
        if let Some(prev) = seen.insert(name.clone(), i) {
            return Err(format!(
                "header names column {name:?} twice (fields {} and {})",
                prev + 1,
                i + 1
            ));
        }
        let col = layout.source_index(&name);
        if let Some(c) = col {
            if let Some((prev, prev_name)) = filled.insert(c, (i, name.clone())) {
                return Err(format!(
                    "header fields {} ({prev_name}) and {} ({name}) both fill column {}",
                    prev + 1,
                    i + 1,
                    layout.source_name(c)
                ));
            }
            if name != layout.source_name(c) {
                aliased.insert(layout.source_name(c).to_string(), name.clone());
            }
        }
        header.push((name, col));
    }
    let names = || {
        header
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    if header.iter().all(|(_, c)| c.is_none()) {
        return Err(format!(
            "header ({}) shares no column with the table (expected {})",
            names(),
            layout.source_names().join(",")
        ));
    }
    let missing: Vec<String> = layout
        .required()
        .iter()
        .filter(|c| !filled.contains_key(c))
        .map(|&c| layout.described(c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "header ({}) lacks required column{} {}: its rows could not be typed into silver, so nothing of the drop was landed",
            names(),
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        ));
    }
    Ok(Header {
        fields: header,
        aliased,
    })
}

fn unescape(raw: &[u8], escaped: bool) -> std::borrow::Cow<'_, [u8]> {
    if !escaped {
        return raw.into();
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        out.push(raw[i]);
        i += if raw[i] == b'"' { 2 } else { 1 };
    }
    out.into()
}

/// Parses a chunk of complete records; line numbers are relative to the chunk's first line.
pub(super) fn parse_chunk(ctx: &ParseCtx, text: &[u8]) -> Result<super::Parsed> {
    let mut b = ChunkBuilder::new(ctx, text.len());
    let header = &ctx.header;
    // Source columns the header does not name: null in every row.
    let missing: Vec<usize> = (0..ctx.layout.source_columns.len())
        .filter(|c| !header.iter().any(|(_, h)| *h == Some(*c)))
        .collect();
    // UTF-8: validate once for the whole chunk; fields split at ASCII bytes are then valid too.
    // Another encoding: each field is transcoded (it is split at ASCII bytes, which are never
    // part of a multi-byte character in the encodings accepted).
    let encoding = ctx.encoding;
    let valid = if encoding.is_utf8() {
        std::str::from_utf8(text).ok()
    } else {
        None
    };
    let mut decoded: Vec<Cow<'_, str>> = Vec::with_capacity(header.len() + 1);
    let mut fields: Vec<Field> = Vec::with_capacity(header.len() + 1);
    let mut p = 0usize;
    let mut line = 0u64;
    let n = text.len();
    while p < n {
        // Blank lines carry no data; skip them.
        if text[p] == b'\n' {
            p += 1;
            line += 1;
            continue;
        }
        if text[p] == b'\r' && text.get(p + 1) == Some(&b'\n') {
            p += 2;
            line += 1;
            continue;
        }
        let start = p;
        let (next, quoted_newlines) = match split_record(text, p, &mut fields) {
            Ok(r) => r,
            Err(fault) => {
                // Reject through the end of the line where the fault is (the first line for an
                // unterminated quote), and carry on after it.
                let (reason, at) = match fault {
                    Fault::Unterminated => (
                        "broken quoting: unterminated quoted field".to_string(),
                        start,
                    ),
                    Fault::AfterQuote(at) => (
                        format!(
                            "broken quoting: text after a closing quote at byte {}",
                            at - start
                        ),
                        at,
                    ),
                    Fault::QuoteInField(at) => (
                        format!(
                            "broken quoting: quote inside an unquoted field at byte {}",
                            at - start
                        ),
                        at,
                    ),
                };
                let end = memchr::memchr(b'\n', &text[at..]).map_or(n, |i| at + i);
                b.reject(line, reason, &text[start..end]);
                line += memchr::memchr_iter(b'\n', &text[start..end]).count() as u64
                    + u64::from(end < n);
                p = end + 1;
                continue;
            }
        };
        let rec_line = line;
        let terminated = text[..next].ends_with(b"\n");
        line += quoted_newlines + u64::from(terminated);
        p = next;
        let raw_end = if terminated { next - 1 } else { next };
        if fields.len() != header.len() {
            b.reject(
                rec_line,
                format!(
                    "wrong field count: {} fields, the header has {}",
                    fields.len(),
                    header.len()
                ),
                &text[start..raw_end],
            );
            continue;
        }
        if next - start > MAX_RECORD_BYTES {
            b.reject(
                rec_line,
                format!("record longer than {MAX_RECORD_BYTES} bytes"),
                &text[start..raw_end],
            );
            continue;
        }
        // Validate (or transcode) every field before appending any, so a rejected row leaves no
        // trace. '"' is ASCII, so the raw field (escapes included) decodes iff its value does.
        decoded.clear();
        let mut bad = None;
        for (i, f) in fields.iter().enumerate() {
            let bytes = &text[f.start..f.end];
            let value: Option<Cow<'_, str>> = if encoding.is_utf8() {
                match valid.and_then(|t| t.get(f.start..f.end)) {
                    Some(s) => Some(s.into()),
                    None => match std::str::from_utf8(bytes) {
                        Ok(s) => Some(s.into()),
                        Err(e) => {
                            bad = Some(format!(
                                "invalid UTF-8 in field {} ({}) at byte {} of the field",
                                i + 1,
                                header[i].0,
                                e.valid_up_to()
                            ));
                            None
                        }
                    },
                }
            } else {
                let v = encoding
                    .encoding()
                    .decode_without_bom_handling_and_without_replacement(bytes);
                if v.is_none() {
                    bad = Some(format!(
                        "invalid {encoding} in field {} ({})",
                        i + 1,
                        header[i].0
                    ));
                }
                v
            };
            match value {
                Some(v) => decoded.push(v),
                None => break,
            }
        }
        if let Some(reason) = bad {
            b.reject(rec_line, reason, &text[start..raw_end]);
            continue;
        }
        let mut rescued: Option<serde_json::Map<String, serde_json::Value>> = None;
        for ((f, (name, col)), raw) in fields.iter().zip(header).zip(&decoded) {
            let value: Cow<'_, str> = if f.escaped {
                raw.replace("\"\"", "\"").into()
            } else {
                Cow::Borrowed(raw.as_ref())
            };
            match col {
                Some(c) => b.values[*c].append_value(&value),
                None => {
                    rescued
                        .get_or_insert_with(Default::default)
                        .insert(name.clone(), serde_json::Value::String(value.into_owned()));
                }
            }
        }
        for &c in &missing {
            b.values[c].append_null();
        }
        match rescued {
            Some(m) => b
                .rescued
                .append_value(serde_json::Value::Object(m).to_string()),
            None => b.rescued.append_null(),
        }
        b.lines.push(rec_line as i64);
    }
    b.finish(text.len(), line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Result<Vec<String>, String> {
        let mut f = Vec::new();
        split_record(s.as_bytes(), 0, &mut f).map_err(|e| match e {
            Fault::Unterminated => "unterminated".into(),
            Fault::AfterQuote(a) => format!("after {a}"),
            Fault::QuoteInField(a) => format!("quote {a}"),
        })?;
        Ok(f.iter()
            .map(|f| {
                String::from_utf8(unescape(&s.as_bytes()[f.start..f.end], f.escaped).into_owned())
                    .unwrap()
            })
            .collect())
    }

    #[test]
    fn splits_rfc4180_records() {
        assert_eq!(split("a,b,c\n").unwrap(), ["a", "b", "c"]);
        assert_eq!(split("a,,c\r\n").unwrap(), ["a", "", "c"]);
        assert_eq!(
            split("1,\"x, y\",\"say \"\"hi\"\"\"\n").unwrap(),
            ["1", "x, y", "say \"hi\""]
        );
        assert_eq!(split("\"multi\nline\",2\n").unwrap(), ["multi\nline", "2"]);
        assert_eq!(split("last,no,newline").unwrap(), ["last", "no", "newline"]);
        assert_eq!(split("a,\"\"\n").unwrap(), ["a", ""]);
        assert_eq!(split("a,\n").unwrap(), ["a", ""]);
    }

    #[test]
    fn rejects_broken_quoting() {
        assert_eq!(split("a,\"open\n").unwrap_err(), "unterminated");
        assert_eq!(split("a,\"x\"y,b\n").unwrap_err(), "after 5");
        assert_eq!(split("a,12\" tall,b\n").unwrap_err(), "quote 4");
    }

    #[test]
    fn boundaries_respect_quotes() {
        let t = b"a,\"x\ny\"\nb,c\nd,\"e";
        assert_eq!(record_end(t, false), Some(8));
        assert_eq!(last_boundary(t), Some(12));
        assert_eq!(last_boundary(b"a,\"x\ny"), None);
        assert_eq!(record_end(b"abc", true), Some(3));
        assert_eq!(record_end(b"abc", false), None);
    }
}
