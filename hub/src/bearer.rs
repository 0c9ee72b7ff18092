//! The bearer token that guards `RemoteExecution` on the hub's TCP listener.
//!
//! Made anew at every start (32 random bytes, hex) in `<data-dir>/hub-token`, mode 0600, so
//! only the desktop user (and the spokes that user runs there) can read it, and a token read
//! before a restart is worth nothing after it. Compared in constant time.

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
    /// A new token, written to `data_dir` in place of the last one (atomically: a spoke reads
    /// the old one or the new one, never half of either).
    pub fn rotate(data_dir: &Path) -> Result<Self, FsError> {
        let path = data_dir.join(FILE_NAME);
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
    fn a_new_token_at_every_start_private_and_checked() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let old = BearerToken::rotate(dir.path()).unwrap();
        let a = BearerToken::rotate(dir.path()).unwrap();
        assert!(
            !a.matches(&old.0),
            "a restart makes the old token worthless"
        );
        let path = dir.path().join(FILE_NAME);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), &*a.0);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(a.0.len(), 64);
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
