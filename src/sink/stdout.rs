//! The stdout sink: one finding JSON object per line.

use std::io::Write;

use super::{BoxFuture, SendError, Sink};
use crate::finding::Finding;

pub struct StdoutSink;

impl Sink for StdoutSink {
    fn send<'a>(&'a self, finding: &'a Finding) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let mut line = finding.to_json();
            line.push('\n');
            let mut out = std::io::stdout().lock();
            out.write_all(line.as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| SendError::Permanent {
                    error: format!("writing to stdout: {e}"),
                })
        })
    }
}
