//! RTMPS: the TLS client configuration an `rtmps://` destination connects with, built once
//! when the sink is built, and what a refused certificate is called.
//!
//! Trust: `tls_ca_file` when given, else the system's trust store (`rustls-native-certs`:
//! `/etc/ssl/certs` on Debian, `SSL_CERT_FILE`/`SSL_CERT_DIR` when set), the same store
//! ffmpeg's TLS layer reads, so switching sinks changes nothing. rustls with the ring
//! provider: no OpenSSL, no cmake, and a sans-IO connection the session drives itself.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use streampub_core::plugin::{ComponentContext, ComponentError, SinkError};

use crate::tls_options::{TlsOptions, CERTIFICATE_FIX};

/// How every session of an `rtmps://` destination starts its TLS: built once, with the sink.
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    pub config: Arc<ClientConfig>,
    /// The name the certificate must be for, and SNI: the URL's host.
    pub server_name: ServerName<'static>,
}

impl TlsSettings {
    /// The settings for `options` to `host`; errors name `tls_ca_file` or `url`.
    pub(crate) fn new(
        options: &TlsOptions,
        context: &ComponentContext,
        host: &str,
    ) -> Result<Self, ComponentError> {
        let server_name = ServerName::try_from(host.to_owned()).map_err(|_| {
            ComponentError::field(
                "url",
                format!("`{host}` is neither a host name nor an IP address"),
            )
        })?;
        Ok(Self {
            config: client_config(options, context)?,
            server_name,
        })
    }
}

/// The client configuration for `options`; errors name `tls_ca_file`.
fn client_config(
    options: &TlsOptions,
    context: &ComponentContext,
) -> Result<Arc<ClientConfig>, ComponentError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| ComponentError::field("tls_verify", error.to_string()))?;
    let config = if options.tls_verify {
        builder
            .with_root_certificates(trusted_roots(options, context)?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The CA certificates of `tls_ca_file`, or the system's.
fn trusted_roots(
    options: &TlsOptions,
    context: &ComponentContext,
) -> Result<RootCertStore, ComponentError> {
    let mut roots = RootCertStore::empty();
    let ca_file_error = |message: String| ComponentError::field("tls_ca_file", message);
    if let Some(text) = options.read_ca_file(context).map_err(ca_file_error)? {
        for certificate in CertificateDer::pem_slice_iter(text.as_bytes()) {
            let certificate = certificate
                .map_err(|error| ca_file_error(format!("a certificate cannot be read: {error}")))?;
            roots.add(certificate).map_err(|error| {
                ca_file_error(format!("a certificate is not a usable CA: {error}"))
            })?;
        }
        return Ok(roots);
    }
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if roots.is_empty() {
        return Err(ca_file_error(
            "this system has no trusted CA certificates (Debian: apt-get install \
             ca-certificates; or SSL_CERT_FILE); give the server's CA as `tls_ca_file`"
                .to_owned(),
        ));
    }
    Ok(roots)
}

/// A TLS failure as the sink reports it: a certificate that does not verify, or a server that
/// does not speak TLS, is fatal at once (no later attempt can cure it) and names the fix.
pub(crate) fn tls_error(error: rustls::Error, host: &str, handshaking: bool) -> SinkError {
    match error {
        rustls::Error::InvalidCertificate(problem) => SinkError::fatal(format!(
            "the RTMPS server's certificate was refused: {}; {CERTIFICATE_FIX}",
            certificate_problem(&problem, host)
        )),
        rustls::Error::InvalidMessage(_) | rustls::Error::PeerIncompatible(_) if handshaking => {
            SinkError::fatal(format!(
                "the server did not complete a TLS handshake ({error}); check that it serves \
                 RTMPS at that port, or publish to rtmp:// if it serves plain RTMP"
            ))
        }
        rustls::Error::AlertReceived(alert) if handshaking => SinkError::fatal(format!(
            "the server refused the TLS handshake (alert {alert:?}); check that it serves RTMPS \
             for `{host}` at that port"
        )),
        other => SinkError::retryable(format!("TLS: {other}")),
    }
}

fn certificate_problem(problem: &CertificateError, host: &str) -> String {
    match problem {
        CertificateError::UnknownIssuer => {
            "not signed by a trusted authority (a private CA or a self-signed certificate)"
                .to_owned()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("the certificate is not for `{host}`")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the certificate has expired".to_owned()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the certificate is not valid yet (check this machine's clock)".to_owned()
        }
        // rustls-webpki's words for a certificate with `CA:TRUE` presented as the server's
        // own: what `openssl req -x509` makes unless told otherwise.
        CertificateError::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            "the server presents a CA certificate (basicConstraints CA:TRUE) as its own, which \
             is refused even when trusted; make the server's certificate with \
             `basicConstraints=critical,CA:FALSE` (openssl req -x509 -addext …), or sign it \
             with a CA and trust that CA"
                .to_owned()
        }
        other => format!("{other:?}"),
    }
}

/// `tls_verify: false`: every certificate is taken; the handshake's signatures are still
/// checked, so the session is encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
