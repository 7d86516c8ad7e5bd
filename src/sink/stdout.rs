//! The stdout sink: one finding JSON object per line. A write that fails
//! (a closed pipe, a full disk behind a redirect) is a permanent failure:
//! the alert was not delivered, so the input is not acknowledged.

use std::io::Write;

use super::{BoxFuture, SendError, Sink};
use crate::finding::Finding;

pub struct StdoutSink;

impl Sink for StdoutSink {
    fn send<'a>(&'a self, finding: &'a Finding) -> BoxFuture<'a, Result<(), SendError>> {
        // A write to a pipe whose reader is slow (or stopped) blocks: on a
        // blocking thread, not on one of the runtime's workers.
        let line = finding.to_json();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || write_text(&mut std::io::stdout().lock(), line))
                .await
                .map_err(|e| SendError::Permanent {
                    error: format!("writing to stdout: {e}"),
                    status: None,
                })?
        })
    }
}

fn write_text(out: &mut impl Write, mut line: String) -> Result<(), SendError> {
    line.push('\n');
    out.write_all(line.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| SendError::Permanent {
            error: format!("writing to stdout: {e}"),
            status: None,
        })
}

/// Writes `finding` as one JSON line to `out` and flushes it.
pub fn write_line(out: &mut impl Write, finding: &Finding) -> Result<(), SendError> {
    write_text(out, finding.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Record;
    use crate::finding::Severity;

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_is_a_permanent_failure_and_a_line_otherwise() {
        let rec = Record::parse(r#"{"eventID":"e","userIdentity":{"type":"Root"}}"#).unwrap();
        let f = Finding::new(&rec, "root-api-call", "t", Severity::High, "r".into(), None);
        let Err(SendError::Permanent { error, status }) = write_line(&mut Broken, &f) else {
            panic!("a failed write must be a permanent failure")
        };
        assert!(error.starts_with("writing to stdout:"), "{error}");
        assert_eq!(status, None);
        let mut out = Vec::new();
        write_line(&mut out, &f).unwrap();
        assert!(out.ends_with(b"\n"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["event_id"], "e");
    }
}
