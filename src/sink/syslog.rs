//! The syslog sink: RFC 5424 messages, octet-counted, over one kept TCP or
//! TLS connection (opened at the first alert, opened again after an
//! error). Syslog has no acknowledgement: an alert counts as delivered once
//! it is written and flushed to the socket; a write that fails is retried
//! on a new connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::format::syslog::frame;
use super::{BoxFuture, SendError, Sink};
use crate::config::SyslogSettings;
use crate::finding::Finding;

trait Stream: AsyncWrite + Unpin + Send {}
impl<T: AsyncWrite + Unpin + Send> Stream for T {}

pub struct SyslogSink {
    settings: SyslogSettings,
    tls: Option<tokio_rustls::TlsConnector>,
    conn: Mutex<Option<Box<dyn Stream>>>,
    timeout: Duration,
}

fn retriable(error: impl std::fmt::Display) -> SendError {
    SendError::Retriable {
        error: error.to_string(),
        retry_after: None,
        status: None,
    }
}

/// The client TLS configuration: `ca_file`'s certificates, or the
/// platform's trust store.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    match ca_file {
        Some(path) => {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no PEM certificate in it", path.display()));
            }
            Ok(builder.with_root_certificates(roots).with_no_client_auth())
        }
        None => {
            use rustls_platform_verifier::BuilderVerifierExt;
            Ok(builder
                .with_platform_verifier()
                .map_err(|e| e.to_string())?
                .with_no_client_auth())
        }
    }
}

impl SyslogSink {
    pub fn new(settings: SyslogSettings, timeout: Duration) -> Result<SyslogSink, String> {
        let tls = if settings.tls {
            Some(tokio_rustls::TlsConnector::from(Arc::new(tls_config(
                settings.ca_file.as_deref(),
            )?)))
        } else {
            None
        };
        Ok(SyslogSink {
            settings,
            tls,
            conn: Mutex::new(None),
            timeout,
        })
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, SendError> {
        let s = &self.settings;
        let tcp = TcpStream::connect((s.host.as_str(), s.port))
            .await
            .map_err(|e| retriable(format!("cannot connect to the syslog server: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(connector) => {
                let name =
                    rustls::pki_types::ServerName::try_from(s.host.clone()).map_err(|e| {
                        retriable(format!("`{}` is not a TLS server name: {e}", s.host))
                    })?;
                let tls = connector.connect(name, tcp).await.map_err(|e| {
                    retriable(format!("TLS handshake with the syslog server failed: {e}"))
                })?;
                Ok(Box::new(tls))
            }
        }
    }

    async fn write(&self, bytes: &[u8]) -> Result<(), SendError> {
        let mut conn = self.conn.lock().await;
        if conn.is_none() {
            *conn = Some(self.connect().await?);
        }
        let stream = conn.as_mut().expect("just connected");
        let written = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        }
        .await;
        if let Err(e) = written {
            // A broken connection is not used again.
            *conn = None;
            return Err(retriable(format!(
                "writing to the syslog server failed: {e}"
            )));
        }
        Ok(())
    }
}

impl Sink for SyslogSink {
    fn send<'a>(&'a self, finding: &'a Finding) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let s = &self.settings;
            let bytes = frame(
                finding,
                s.message,
                s.facility,
                &s.hostname,
                chrono::Utc::now(),
            );
            match tokio::time::timeout(self.timeout, self.write(&bytes)).await {
                Ok(r) => r,
                Err(_) => {
                    // Part of the frame may be written: start a new connection.
                    *self.conn.lock().await = None;
                    Err(retriable(format!(
                        "the syslog server did not take the message within {} s",
                        self.timeout.as_secs()
                    )))
                }
            }
        })
    }
}
