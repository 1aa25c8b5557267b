//! Secret values (webhook signing secrets, the OnceHub API key): types that never print
//! themselves, and the local secret file a first run generates so the service works with no
//! settings at all.
//!
//! Invariant: no `Debug`/`Display` of a secret shows its value; only [`WebhookSecret::expose`] does,
//! and only the signer and verifier call it.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;

/// A webhook signing secret. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    /// Accepts any non-blank text (surrounding whitespace is trimmed).
    pub fn parse(text: &str) -> Option<WebhookSecret> {
        let t = text.trim();
        (!t.is_empty()).then(|| WebhookSecret(t.to_owned()))
    }

    /// A new random secret: 32 lowercase hex characters, like OnceHub's.
    pub fn generate() -> WebhookSecret {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        WebhookSecret(hex::encode(bytes))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A OnceHub API key. Its `Debug` output is redacted; only the client's header uses the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKey {
    /// Any non-blank text, trimmed; `None` when blank (an empty `ONCEHUB_API_KEY=` means unset).
    pub fn parse(text: &str) -> Option<ApiKey> {
        let t = text.trim();
        (!t.is_empty()).then(|| ApiKey(t.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The `--admin-token` that opens the delivery inspector. Its `Debug` output is redacted; it is
/// only ever compared, in constant time.
#[derive(Clone)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Any non-blank text, trimmed; `None` when blank.
    pub fn parse(text: &str) -> Option<AdminToken> {
        let t = text.trim();
        (!t.is_empty()).then(|| AdminToken(t.to_owned()))
    }

    /// Whether `offered` is this token, in time independent of where they differ. Both sides
    /// are hashed first, so the length of the token is not given away either.
    pub fn matches(&self, offered: &str) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let (a, b) = (Sha256::digest(self.0.as_bytes()), Sha256::digest(offered.trim().as_bytes()));
        a.as_slice().ct_eq(b.as_slice()).into()
    }

    /// The login cookie's value: derived from the token, so the cookie never holds the token.
    pub fn session(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(format!("oncehub-bridge inspector session\n{}", self.0).as_bytes()))
    }

    /// Whether `offered` is this token's [`Self::session`] value, in constant time.
    pub fn matches_session(&self, offered: &str) -> bool {
        use subtle::ConstantTimeEq;
        let (a, b) = (self.session(), offered.trim().to_owned());
        a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
    }

    /// Characters in the token.
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

/// Reading or writing the local secret file failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read the webhook secret file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the webhook secret file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the webhook secret file {path} is empty")]
    Empty { path: PathBuf },
}

/// Where a first run keeps its generated secret.
pub fn secret_file(data_dir: &Path) -> PathBuf {
    data_dir.join("webhook-secret")
}

/// Reads the secret file, if it exists.
pub fn read_secret_file(path: &Path) -> Result<Option<WebhookSecret>, SecretFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => WebhookSecret::parse(&text).map(Some).ok_or_else(|| SecretFileError::Empty { path: path.into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SecretFileError::Read { path: path.into(), source }),
    }
}

/// Returns the secret in `path`, generating it (file mode 0600) when the file does not exist.
/// The boolean is true when the secret was generated now.
pub fn load_or_generate(path: &Path) -> Result<(WebhookSecret, bool), SecretFileError> {
    if let Some(s) = read_secret_file(path)? {
        return Ok((s, false));
    }
    let secret = WebhookSecret::generate();
    let write = || -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path)?;
        f.write_all(secret.expose().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    };
    write().map_err(|source| SecretFileError::Write { path: path.into(), source })?;
    Ok((secret, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = WebhookSecret::parse("super-secret-value").unwrap();
        assert!(!format!("{s:?}").contains("super-secret-value"));
        assert!(WebhookSecret::parse("  ").is_none());
    }

    #[test]
    fn generated_once_then_reused_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_file(dir.path());
        let (a, fresh) = load_or_generate(&path).unwrap();
        assert!(fresh);
        assert_eq!(a.expose().len(), 32);
        let (b, fresh_again) = load_or_generate(&path).unwrap();
        assert!(!fresh_again);
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
