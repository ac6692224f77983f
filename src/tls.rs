//! TLS configuration, always on rustls's ring provider: the upstream client's trust roots (the
//! public web roots plus an optional CA file) and the emulator's server certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::Error;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate in a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = std::fs::read(path)
        .map_err(|e| Error::Internal(format!("cannot read {}: {e}", path.display())))?;
    parse_certs(&pem).map_err(|e| Error::Internal(format!("{}: {e}", path.display())))
}

/// Parses every certificate in PEM text; at least one must be there.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(certs)
}

/// The upstream client's configuration: webpki roots, plus the certificates in `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|e| {
                Error::Internal(format!("{}: unusable CA certificate: {e}", path.display()))
            })?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A server configuration from a PEM certificate chain and a PEM private key, offering h2 and
/// HTTP/1.1 by ALPN.
///
/// A lone self-signed CA certificate (what `openssl req -x509` makes by default) is served behind
/// a leaf signed with its key (see [`leaf_under_ca`]), so that a client trusting that certificate
/// verifies the server.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig, Error> {
    let certs =
        parse_certs(cert_pem).map_err(|e| Error::Internal(format!("TLS certificate: {e}")))?;
    let (certs, key) = match leaf_under_ca(&certs, key_pem)? {
        Some(chain_and_key) => chain_and_key,
        None => {
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| Error::Internal(format!("TLS private key: {e}")))?;
            (certs, key)
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Internal(format!("TLS certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// [`server_config`] from files.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<ServerConfig, Error> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| Error::Internal(format!("cannot read {}: {e}", p.display())))
    };
    server_config(&read(cert)?, &read(key)?)
}

/// A chain to serve and its key.
type ChainAndKey = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// When `certs` is one self-signed CA certificate, a new leaf certificate for `localhost`,
/// 127.0.0.1 and ::1, signed with the CA's key (`key_pem`), served before it. A client that trusts
/// the certificate (the gateway's `tencent.ca_file`) refuses it as the server's own certificate
/// (webpki: CaUsedAsEndEntity), and `openssl req -x509` marks the certificates it makes as CAs
/// (basicConstraints CA:TRUE): with the leaf, the chain verifies. `None` for any other chain.
fn leaf_under_ca(
    certs: &[CertificateDer<'static>],
    key_pem: &[u8],
) -> Result<Option<ChainAndKey>, Error> {
    let [ca] = certs else {
        return Ok(None);
    };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(ca) else {
        return Ok(None);
    };
    let is_ca = parsed
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|constraints| constraints.value.ca);
    if !is_ca || parsed.subject().as_raw() != parsed.issuer().as_raw() {
        return Ok(None);
    }
    let fail = |e: rcgen::Error| {
        Error::Internal(format!(
            "TLS certificate: a self-signed CA; cannot sign a leaf under it with its key: {e}"
        ))
    };
    let key_text = std::str::from_utf8(key_pem)
        .map_err(|_| Error::Internal("TLS private key: not PEM text".into()))?;
    let issuer =
        rcgen::Issuer::from_ca_cert_der(ca, rcgen::KeyPair::from_pem(key_text).map_err(fail)?)
            .map_err(fail)?;
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let mut params = rcgen::CertificateParams::new(names).map_err(fail)?;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = rcgen::KeyPair::generate().map_err(fail)?;
    let leaf = params.signed_by(&leaf_key, &issuer).map_err(fail)?;
    let key = PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    Ok(Some((vec![leaf.der().clone(), ca.clone()], key)))
}
