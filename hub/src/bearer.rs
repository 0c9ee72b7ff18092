//! The bearer token that guards `RemoteExecution` on the hub's TCP listener.
//!
//! Created once (32 random bytes, hex) in `<data-dir>/hub-token`, mode 0600, so only the
//! desktop user (and the spokes that user runs there) can read it. Compared in constant time.

use std::{fmt, path::Path, sync::Arc};

use subtle::ConstantTimeEq;
use tonic::{Request, Status, service::Interceptor};

use helix_mesh::fsutil::{self, FsError};

/// The token file's name inside the data dir.
pub const FILE_NAME: &str = helix_discovery::local::TOKEN_FILE;

/// The token; `Debug` does not show it.
#[derive(Clone)]
pub struct BearerToken(Arc<str>);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// Reads the token from `data_dir`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, FsError> {
        let path = data_dir.join(FILE_NAME);
        if let Some(bytes) = fsutil::read_optional(&path)? {
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            if text.len() >= 32 {
                return Ok(Self(text.into()));
            }
            tracing::warn!(path = %path.display(), "token file is too short; writing a new token");
        }
        let token = hex::encode(rand::random::<[u8; 32]>());
        fsutil::write_private_atomic(&path, format!("{token}\n").as_bytes())?;
        Ok(Self(token.into()))
    }

    fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// A tonic interceptor that requires `authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct RequireBearer(pub BearerToken);

impl Interceptor for RequireBearer {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(value) = request.metadata().get(helix_mesh::AUTHORIZATION_HEADER) else {
            return Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>`; the token is in the hub's data dir (file hub-token)",
            ));
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match presented {
            Some(token) if self.0.matches(token) => Ok(request),
            _ => Err(Status::unauthenticated(
                "wrong bearer token; use the token in the hub's data dir (file hub-token)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_once_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let a = BearerToken::load_or_create(dir.path()).unwrap();
        let b = BearerToken::load_or_create(dir.path()).unwrap();
        assert!(a.matches(&b.0));
        assert!(!format!("{a:?}").contains(&*a.0));
        let mut check = RequireBearer(a.clone());
        let mut req = Request::new(());
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", &*a.0).parse().unwrap(),
        );
        assert!(check.call(req).is_ok());
        let mut bad = Request::new(());
        bad.metadata_mut()
            .insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(
            check.call(bad).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            check.call(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }
}
