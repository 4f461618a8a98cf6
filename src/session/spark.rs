//! Spark SQL functions DataFusion lacks, so the SQL of `tables/` runs unchanged on Spark and
//! here: `unix_micros(timestamp)` and `try_to_timestamp(string, pattern)`.

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, TimestampMicrosecondBuilder};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, TimeUnit};
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::error::{DataFusionError, Result};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use deltalake::datafusion::prelude::SessionContext;

/// Registers the functions of this module in `ctx`.
pub(crate) fn register(ctx: &SessionContext) {
    let ts = |u| TypeSignature::Exact(vec![DataType::Timestamp(u, None)]);
    ctx.register_udf(ScalarUDF::new_from_impl(UnixMicros {
        signature: Signature::one_of(
            vec![
                ts(TimeUnit::Nanosecond),
                ts(TimeUnit::Microsecond),
                ts(TimeUnit::Millisecond),
                ts(TimeUnit::Second),
            ],
            Volatility::Immutable,
        ),
    }));
    let s = |t: DataType| TypeSignature::Exact(vec![t, DataType::Utf8]);
    ctx.register_udf(ScalarUDF::new_from_impl(TryToTimestamp {
        signature: Signature::one_of(
            vec![
                s(DataType::Utf8),
                s(DataType::Utf8View),
                s(DataType::LargeUtf8),
            ],
            Volatility::Immutable,
        ),
    }));
}

/// Spark's `unix_micros(timestamp)`: microseconds since the epoch.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UnixMicros {
    signature: Signature,
}

impl ScalarUDFImpl for UnixMicros {
    fn name(&self) -> &str {
        "unix_micros"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        map_values(&args.args[0], |a| {
            let t = cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            Ok(cast(&t, &DataType::Int64)?)
        })
    }
}

/// Spark's `try_to_timestamp(string, pattern)`: the string read with a Spark datetime pattern
/// as a timestamp without time zone, or NULL when it does not match or names no real instant
/// (month 13, February 30th). The pattern is a constant made of `yyyy`, `M`, `MM`, `d`, `dd`,
/// `H`, `HH`, `m`, `mm`, `s`, `ss` and literal characters (`'...'` quotes letters); a single
/// letter reads one or two digits, two letters exactly two, `yyyy` exactly four.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TryToTimestamp {
    signature: Signature,
}

impl ScalarUDFImpl for TryToTimestamp {
    fn name(&self) -> &str {
        "try_to_timestamp"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Microsecond, None))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let pattern = match &args.args[1] {
            ColumnarValue::Scalar(
                ScalarValue::Utf8(Some(p))
                | ScalarValue::Utf8View(Some(p))
                | ScalarValue::LargeUtf8(Some(p)),
            ) => Pattern::compile(p).map_err(DataFusionError::Plan)?,
            _ => {
                return Err(DataFusionError::Plan(
                    "try_to_timestamp: the pattern must be a constant string".into(),
                ));
            }
        };
        map_values(&args.args[0], |array| {
            Ok(Arc::new(match array.data_type() {
                DataType::Utf8 => parse_all(array.as_string::<i32>().iter(), &pattern),
                DataType::LargeUtf8 => parse_all(array.as_string::<i64>().iter(), &pattern),
                DataType::Utf8View => parse_all(array.as_string_view().iter(), &pattern),
                t => {
                    return Err(DataFusionError::Plan(format!(
                        "try_to_timestamp: cannot read a timestamp from {t}"
                    )));
                }
            }))
        })
    }
}

/// `f` over an argument's values: an array stays an array, a scalar a scalar.
fn map_values(
    value: &ColumnarValue,
    f: impl Fn(&ArrayRef) -> Result<ArrayRef>,
) -> Result<ColumnarValue> {
    Ok(match value {
        ColumnarValue::Array(a) => ColumnarValue::Array(f(a)?),
        ColumnarValue::Scalar(s) => {
            let a = f(&s.to_array()?)?;
            ColumnarValue::Scalar(ScalarValue::try_from_array(&a, 0)?)
        }
    })
}

fn parse_all<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
    pattern: &Pattern,
) -> deltalake::arrow::array::TimestampMicrosecondArray {
    let mut b = TimestampMicrosecondBuilder::with_capacity(values.size_hint().0);
    // The rows of an invoice arrive together and share its date: a value equal to the one
    // before it is not parsed again.
    let mut last: Option<(&str, Option<i64>)> = None;
    for v in values {
        let t = v.and_then(|s| match last {
            Some((l, t)) if l == s => t,
            _ => {
                let t = pattern.parse(s.as_bytes());
                last = Some((s, t));
                t
            }
        });
        b.append_option(t);
    }
    b.finish()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A number: the field, and how many digits it may have.
    Number { field: Field, min: u8, max: u8 },
    /// Bytes that must be there as they are.
    Literal(Vec<u8>),
}

/// A compiled Spark datetime pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Compiles `pattern`, or says which part of it is not supported.
    pub(crate) fn compile(pattern: &str) -> std::result::Result<Self, String> {
        let mut tokens = Vec::new();
        let mut literal = Vec::new();
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&q| q == '\'')
                    .ok_or_else(|| format!("try_to_timestamp: unclosed quote in '{pattern}'"))?;
                let quoted: String = chars[i + 1..i + 1 + end].iter().collect();
                literal.extend_from_slice(if end == 0 { b"'" } else { quoted.as_bytes() });
                i += end + 2;
                continue;
            }
            if !c.is_ascii_alphabetic() {
                let mut buf = [0u8; 4];
                literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 1;
                continue;
            }
            let run = chars[i..].iter().take_while(|&&d| d == c).count();
            let field = match c {
                'y' => Field::Year,
                'M' => Field::Month,
                'd' => Field::Day,
                'H' => Field::Hour,
                'm' => Field::Minute,
                's' => Field::Second,
                _ => {
                    return Err(format!(
                        "try_to_timestamp: pattern letter '{c}' of '{pattern}' is not supported (yyyy M d H m s are)"
                    ));
                }
            };
            let (min, max) = match (field, run) {
                (Field::Year, 4) => (4, 4),
                (Field::Year, _) => {
                    return Err(format!(
                        "try_to_timestamp: years are read as 'yyyy' ('{pattern}')"
                    ));
                }
                (_, 1) => (1, 2),
                (_, 2) => (2, 2),
                _ => {
                    return Err(format!(
                        "try_to_timestamp: '{}' in '{pattern}' is too long",
                        c.to_string().repeat(run)
                    ));
                }
            };
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            }
            tokens.push(Token::Number { field, min, max });
            i += run;
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        Ok(Self { tokens })
    }

    /// Microseconds since the epoch of the instant `s` names, if it matches the whole pattern.
    /// Runs for every typed row: one pass over the bytes, digits folded as they are read.
    pub(crate) fn parse(&self, s: &[u8]) -> Option<i64> {
        // Year, month, day, hour, minute, second, indexed by `Field`.
        let mut v = [1970u32, 1, 1, 0, 0, 0];
        let mut pos = 0;
        for t in &self.tokens {
            match t {
                Token::Literal(l) => {
                    let end = pos + l.len();
                    if s.get(pos..end)? != l.as_slice() {
                        return None;
                    }
                    pos = end;
                }
                Token::Number { field, min, max } => {
                    let (mut n, mut x) = (0, 0u32);
                    while n < *max as usize {
                        match s.get(pos + n) {
                            Some(&b) if b.is_ascii_digit() => x = x * 10 + u32::from(b - b'0'),
                            _ => break,
                        }
                        n += 1;
                    }
                    if n < *min as usize {
                        return None;
                    }
                    pos += n;
                    v[*field as usize] = x;
                }
            }
        }
        if pos != s.len() {
            return None;
        }
        let [y, mo, d, h, mi, sec] = v;
        let t = chrono::NaiveDate::from_ymd_opt(y as i32, mo, d)?.and_hms_opt(h, mi, sec)?;
        Some(t.and_utc().timestamp_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike};

    fn at(s: &str) -> Option<i64> {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .ok()
            .map(|t| t.and_utc().timestamp_micros())
    }

    #[test]
    fn both_date_forms_of_the_retail_data_parse() {
        let iso = Pattern::compile("yyyy-MM-dd HH:mm:ss").unwrap();
        let us = Pattern::compile("M/d/yyyy H:mm").unwrap();
        assert_eq!(iso.parse(b"2010-12-01 08:26:00"), at("2010-12-01 08:26:00"));
        assert_eq!(us.parse(b"12/1/2010 8:26"), at("2010-12-01 08:26:00"));
        assert_eq!(us.parse(b"1/12/2011 17:05"), at("2011-01-12 17:05:00"));
        assert_eq!(us.parse(b"01/02/2011 09:05"), at("2011-01-02 09:05:00"));
    }

    #[test]
    fn sampled_minutes_read_as_chrono_reads_them() {
        let iso = Pattern::compile("yyyy-MM-dd HH:mm:ss").unwrap();
        let us = Pattern::compile("M/d/yyyy H:mm").unwrap();
        let mut day = chrono::NaiveDate::from_ymd_opt(1999, 12, 31).unwrap();
        while day.year() < 2013 {
            for minute in (0..24 * 60).step_by(37) {
                let t = day
                    .and_hms_opt(minute / 60, minute % 60, minute % 59)
                    .unwrap();
                let (iso_text, us_text) = (
                    t.format("%Y-%m-%d %H:%M:%S").to_string(),
                    t.format("%-m/%-d/%Y %-H:%M").to_string(),
                );
                assert_eq!(iso.parse(iso_text.as_bytes()), at(&iso_text), "{iso_text}");
                let whole_minute = t.with_second(0).unwrap().and_utc().timestamp_micros();
                assert_eq!(
                    us.parse(us_text.as_bytes()),
                    Some(whole_minute),
                    "{us_text}"
                );
            }
            day += chrono::TimeDelta::days(11);
        }
        for text in [
            "2000-02-29 00:00:00",
            "2012-02-29 23:59:59",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59",
        ] {
            assert_eq!(iso.parse(text.as_bytes()), at(text), "{text}");
        }
        for text in [
            "1900-02-29 00:00:00",
            "2100-02-29 00:00:00",
            "2011-04-31 00:00:00",
            "2011-00-10 00:00:00",
            "2011-01-00 00:00:00",
            "2011-01-01 12:00:60",
        ] {
            assert_eq!(iso.parse(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn anything_else_is_null() {
        let iso = Pattern::compile("yyyy-MM-dd HH:mm:ss").unwrap();
        let us = Pattern::compile("M/d/yyyy H:mm").unwrap();
        for bad in [
            "",
            "2010-12-01",
            "2010-12-01 08:26",
            "2010-12-01 08:26:00 ",
            "2010-13-01 08:26:00",
            "2011-02-29 10:00:00",
            "2010-12-01T08:26:00",
            "x010-12-01 08:26:00",
        ] {
            assert_eq!(iso.parse(bad.as_bytes()), None, "{bad}");
        }
        for bad in [
            "12/1/2010",
            "12/1/10 8:26",
            "123/1/2010 8:26",
            "2/30/2011 8:26",
            "12/1/2010 24:00",
            "12/1/2010 8:60",
            "12-1-2010 8:26",
            "12/1/2010 8:26:00",
        ] {
            assert_eq!(us.parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn runs_of_equal_values_parse_as_each_value_does() {
        let us = Pattern::compile("M/d/yyyy H:mm").unwrap();
        let values = [
            Some("12/1/2010 8:26"),
            Some("12/1/2010 8:26"),
            None,
            Some("12/1/2010 8:26"),
            Some("bad"),
            Some("bad"),
            Some("12/1/2010 8:26"),
            Some("12/1/2010 8:28"),
            Some("12/1/2010 8:28"),
            Some(""),
            None,
            None,
            Some("1/12/2011 17:05"),
        ];
        let parsed = parse_all(values.iter().copied(), &us);
        let expected: Vec<Option<i64>> = values
            .iter()
            .map(|v| v.and_then(|s| us.parse(s.as_bytes())))
            .collect();
        assert_eq!(parsed.iter().collect::<Vec<_>>(), expected);
        assert_eq!(expected.iter().flatten().count(), 7);
    }

    #[test]
    fn quoted_letters_and_unsupported_patterns() {
        let p = Pattern::compile("yyyy-MM-dd'T'HH:mm").unwrap();
        assert_eq!(p.parse(b"2011-03-04T05:06"), at("2011-03-04 05:06:00"));
        assert!(Pattern::compile("yy-MM-dd").is_err());
        assert!(Pattern::compile("yyyy-MM-dd a").is_err());
        assert!(Pattern::compile("yyyy-MMM-dd").is_err());
        assert!(Pattern::compile("yyyy'-MM").is_err());
    }
}
