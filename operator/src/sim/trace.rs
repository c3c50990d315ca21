//! Reading invocation traces in the per-minute format of the Azure Functions
//! 2019 samples: a `function,minute,count` header, then one line per function
//! and minute with invocations (minutes not listed had none).

use std::collections::BTreeMap;
use std::io::BufRead;

/// Minutes in the traced day.
pub const MINUTES: u32 = 1440;

/// Why a trace could not be read. Line numbers count from 1 (the header).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Reading the file failed.
    #[error("reading the trace: {0}")]
    Io(#[from] std::io::Error),
    /// The first line is not the expected header.
    #[error("line 1: expected the header `function,minute,count`, found {found:?}")]
    Header {
        /// What the first line held.
        found: String,
    },
    /// A line does not have three comma-separated fields.
    #[error("line {line}: expected 3 fields `function,minute,count`, found {fields}")]
    Fields {
        /// Line number.
        line: usize,
        /// Number of fields found.
        fields: usize,
    },
    /// The function id is empty.
    #[error("line {line}: empty function id")]
    EmptyFunction {
        /// Line number.
        line: usize,
    },
    /// The minute is not a number in 1..=1440.
    #[error("line {line}: minute {text:?} is not a whole number from 1 to 1440")]
    Minute {
        /// Line number.
        line: usize,
        /// The field as written.
        text: String,
    },
    /// The count is not a non-negative whole number.
    #[error("line {line}: count {text:?} is not a non-negative whole number")]
    Count {
        /// Line number.
        line: usize,
        /// The field as written.
        text: String,
    },
    /// The same function and minute appear twice.
    #[error("line {line}: function {function} minute {minute} already appeared on line {first}")]
    Duplicate {
        /// Line number.
        line: usize,
        /// Function id.
        function: String,
        /// Minute.
        minute: u32,
        /// Where it first appeared.
        first: usize,
    },
    /// No data line at all.
    #[error("the trace has no invocations")]
    Empty,
}

/// One function's invocations: (minute, count) pairs in minute order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionTrace {
    /// Function id.
    pub id: String,
    /// Minutes (1-based) with their invocation counts, ascending, counts > 0.
    pub minutes: Vec<(u32, u32)>,
}

impl FunctionTrace {
    /// Total invocations.
    pub fn invocations(&self) -> u64 {
        self.minutes.iter().map(|&(_, c)| u64::from(c)).sum()
    }
}

/// Reads a trace; functions come out sorted by id.
pub fn read(input: impl BufRead) -> Result<Vec<FunctionTrace>, TraceError> {
    let mut lines = input.lines();
    let header = lines.next().transpose()?.unwrap_or_default();
    if header.trim() != "function,minute,count" {
        return Err(TraceError::Header { found: header });
    }
    let mut by_fn: BTreeMap<String, BTreeMap<u32, (u32, usize)>> = BTreeMap::new();
    for (idx, text) in lines.enumerate() {
        let line = idx + 2;
        let text = text?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split(',').map(str::trim).collect();
        let [function, minute, count] = fields[..] else {
            return Err(TraceError::Fields {
                line,
                fields: fields.len(),
            });
        };
        if function.is_empty() {
            return Err(TraceError::EmptyFunction { line });
        }
        let minute = minute
            .parse::<u32>()
            .ok()
            .filter(|m| (1..=MINUTES).contains(m))
            .ok_or_else(|| TraceError::Minute {
                line,
                text: minute.to_owned(),
            })?;
        let count = count.parse::<u32>().map_err(|_| TraceError::Count {
            line,
            text: count.to_owned(),
        })?;
        let minutes = by_fn.entry(function.to_owned()).or_default();
        if let Some(&(_, first)) = minutes.get(&minute) {
            return Err(TraceError::Duplicate {
                line,
                function: function.to_owned(),
                minute,
                first,
            });
        }
        minutes.insert(minute, (count, line));
    }
    let traces: Vec<FunctionTrace> = by_fn
        .into_iter()
        .map(|(id, minutes)| FunctionTrace {
            id,
            minutes: minutes
                .into_iter()
                .filter(|&(_, (c, _))| c > 0)
                .map(|(m, (c, _))| (m, c))
                .collect(),
        })
        .filter(|f| !f.minutes.is_empty())
        .collect();
    if traces.is_empty() {
        return Err(TraceError::Empty);
    }
    Ok(traces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<FunctionTrace>, TraceError> {
        read(text.as_bytes())
    }

    #[test]
    fn reads_sparse_minutes_grouped_by_function() {
        let t = parse("function,minute,count\nb,3,2\na,1,1\nb,1,5\n").unwrap();
        assert_eq!(
            t,
            vec![
                FunctionTrace {
                    id: "a".into(),
                    minutes: vec![(1, 1)]
                },
                FunctionTrace {
                    id: "b".into(),
                    minutes: vec![(1, 5), (3, 2)]
                },
            ]
        );
        assert_eq!(t[1].invocations(), 7);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("fn,minute,count\n", "line 1: expected the header"),
            ("function,minute,count\na,1\n", "line 2: expected 3 fields"),
            (
                "function,minute,count\na,1,1\na,0,1\n",
                "line 3: minute \"0\"",
            ),
            (
                "function,minute,count\na,1441,1\n",
                "line 2: minute \"1441\"",
            ),
            ("function,minute,count\na,2,x\n", "line 2: count \"x\""),
            ("function,minute,count\na,2,-1\n", "line 2: count \"-1\""),
            ("function,minute,count\n,2,1\n", "line 2: empty function id"),
            (
                "function,minute,count\na,2,1\nb,1,1\na,2,3\n",
                "line 4: function a minute 2 already appeared on line 2",
            ),
            ("function,minute,count\n", "the trace has no invocations"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
    }
}
