//! What the GoTrue stand-in remembers: users (their rows live in `auth.users`; passwords only
//! here, salted and hashed), sessions, single-use refresh tokens and emailed codes. A small
//! struct behind one lock, never held across an `.await`; the routes do the database writes
//! first and then tell this state.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthFail;
use crate::jwt::{Secret, hex32, now_secs};

/// How long an emailed code is valid (GoTrue's default `MAILER_OTP_EXP`).
pub const OTP_LIFETIME: Duration = Duration::from_secs(3600);
/// GoTrue's minimum password length.
pub const MIN_PASSWORD_LEN: usize = 6;

/// A user as the routes need it.
#[derive(Clone)]
struct User {
    id: String,
    email: String,
    /// SHA-256 of the run's salt and the password; none for users made by an emailed code.
    password: Option<[u8; 32]>,
    created_at: SystemTime,
    last_sign_in_at: Option<SystemTime>,
}

struct Session {
    user_id: String,
    method: Method,
}

/// An outstanding refresh token.
struct Refresh {
    session_id: String,
    used: bool,
}

struct Otp {
    code: String,
    expires: Instant,
}

#[derive(Default)]
struct Inner {
    /// By lower-cased email.
    users: HashMap<String, User>,
    sessions: HashMap<String, Session>,
    refresh: HashMap<String, Refresh>,
    /// By lower-cased email.
    otps: HashMap<String, Otp>,
}

/// How a session was started (the token's `amr`).
#[derive(Debug, Clone, Copy)]
pub enum Method {
    Password,
    Otp,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Otp => "otp",
        }
    }
}

/// The auth state and how it mints tokens.
pub struct AuthState {
    inner: Mutex<Inner>,
    secret: Secret,
    salt: String,
    /// Lifetime of access tokens.
    expiry: Duration,
    /// The `iss` claim: `<origin>/auth/v1`.
    issuer: String,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthState")
            .field("issuer", &self.issuer)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

impl AuthState {
    pub fn new(secret: Secret, expiry: Duration, issuer: String) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            secret,
            salt: hex32(),
            expiry,
            issuer,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn hash(&self, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// The id of the user with this email, if any.
    pub fn user_id(&self, email: &str) -> Option<String> {
        self.lock()
            .users
            .get(&email.to_lowercase())
            .map(|u| u.id.clone())
    }

    /// Remembers a user whose `auth.users` row was just inserted.
    pub fn add_user(&self, id: &str, email: &str, password: Option<&str>) {
        let user = User {
            id: id.to_owned(),
            email: email.to_owned(),
            password: password.map(|p| self.hash(p)),
            created_at: SystemTime::now(),
            last_sign_in_at: None,
        };
        self.lock().users.insert(email.to_lowercase(), user);
    }

    /// The password grant.
    pub fn sign_in_password(&self, email: &str, password: &str) -> Result<Value, AuthFail> {
        let hash = self.hash(password);
        let mut inner = self.lock();
        let user = inner
            .users
            .get(&email.to_lowercase())
            .filter(|u| u.password.is_some_and(|p| bool::from(p.ct_eq(&hash))))
            .cloned()
            .ok_or(AuthFail::InvalidCredentials)?;
        Ok(self.start_session(&mut inner, user, Method::Password))
    }

    /// A new code for `email` (an existing user); returns it for the mail.
    pub fn new_otp(&self, email: &str) -> String {
        let code = format!("{:06}", rand::random_range(0..1_000_000u32));
        let otp = Otp {
            code: code.clone(),
            expires: Instant::now() + OTP_LIFETIME,
        };
        self.lock().otps.insert(email.to_lowercase(), otp);
        code
    }

    /// Exchanges an emailed code (once) for a session.
    pub fn verify_otp(&self, email: &str, code: &str) -> Result<Value, AuthFail> {
        let key = email.to_lowercase();
        let mut inner = self.lock();
        let ok = inner.otps.get(&key).is_some_and(|otp| {
            otp.expires > Instant::now() && bool::from(otp.code.as_bytes().ct_eq(code.as_bytes()))
        });
        let user = inner.users.get(&key).cloned();
        let (true, Some(user)) = (ok, user) else {
            return Err(AuthFail::OtpInvalid);
        };
        inner.otps.remove(&key);
        Ok(self.start_session(&mut inner, user, Method::Otp))
    }

    /// Uses up a refresh token for a new pair in the same session. A token used twice ends
    /// its session (GoTrue's reuse detection).
    pub fn refresh(&self, token: &str) -> Result<Value, AuthFail> {
        let mut inner = self.lock();
        let Some(entry) = inner.refresh.get_mut(token) else {
            return Err(AuthFail::RefreshNotFound);
        };
        if std::mem::replace(&mut entry.used, true) {
            let session = entry.session_id.clone();
            end_sessions(&mut inner, |id, _| *id == session);
            return Err(AuthFail::RefreshAlreadyUsed);
        }
        let session_id = entry.session_id.clone();
        let (user, method) = inner
            .sessions
            .get(&session_id)
            .and_then(|s| {
                let user = inner.users.values().find(|u| u.id == s.user_id)?;
                Some((user.clone(), s.method))
            })
            .ok_or(AuthFail::RefreshNotFound)?;
        Ok(self.issue(&mut inner, &user, &session_id, method))
    }

    /// The user of a verified access token whose session still exists.
    pub fn user(&self, sub: &str, session_id: Option<&str>) -> Result<Value, AuthFail> {
        let inner = self.lock();
        let live = session_id.is_some_and(|s| inner.sessions.contains_key(s));
        if !live {
            return Err(AuthFail::SessionNotFound);
        }
        inner
            .users
            .values()
            .find(|u| u.id == sub)
            .map(user_json)
            .ok_or(AuthFail::SessionNotFound)
    }

    /// Ends sessions of `sub`: `global` all, `local` this one, `others` all but this one. Their
    /// refresh tokens stop working; access tokens already issued stay valid until they expire,
    /// as with GoTrue.
    pub fn logout(&self, sub: &str, session_id: Option<&str>, scope: &str) -> Result<(), AuthFail> {
        let mut inner = self.lock();
        let this = session_id.unwrap_or_default().to_owned();
        match scope {
            "global" => end_sessions(&mut inner, |_, s| s.user_id == sub),
            "local" => end_sessions(&mut inner, |id, _| *id == this),
            "others" => end_sessions(&mut inner, |id, s| s.user_id == sub && *id != this),
            _ => return Err(AuthFail::BadScope),
        }
        Ok(())
    }

    fn start_session(&self, inner: &mut Inner, mut user: User, method: Method) -> Value {
        let session_id = uuid::Uuid::new_v4().to_string();
        inner.sessions.insert(
            session_id.clone(),
            Session {
                user_id: user.id.clone(),
                method,
            },
        );
        user.last_sign_in_at = Some(SystemTime::now());
        if let Some(stored) = inner.users.get_mut(&user.email.to_lowercase()) {
            stored.last_sign_in_at = user.last_sign_in_at;
        }
        self.issue(inner, &user, &session_id, method)
    }

    /// A session answer (`access_token`, `refresh_token`, `expires_*`, `user`) with a fresh
    /// refresh token in `session_id`.
    fn issue(&self, inner: &mut Inner, user: &User, session_id: &str, method: Method) -> Value {
        let refresh_token = hex32()[..32].to_owned();
        inner.refresh.insert(
            refresh_token.clone(),
            Refresh {
                session_id: session_id.to_owned(),
                used: false,
            },
        );
        let now = now_secs();
        let expires_in = i64::try_from(self.expiry.as_secs()).unwrap_or(i64::MAX);
        let expires_at = now.saturating_add(expires_in);
        let access_token = self.secret.sign(&json!({
            "iss": self.issuer, "sub": user.id, "aud": "authenticated", "exp": expires_at,
            "iat": now, "email": user.email, "phone": "", "role": "authenticated",
            "app_metadata": {"provider": "email", "providers": ["email"]},
            "user_metadata": {}, "aal": "aal1",
            "amr": [{"method": method.name(), "timestamp": now}],
            "session_id": session_id, "is_anonymous": false,
        }));
        json!({
            "access_token": access_token, "token_type": "bearer",
            "expires_in": expires_in, "expires_at": expires_at,
            "refresh_token": refresh_token, "user": user_json(user),
        })
    }
}

/// Removes the sessions `pick` selects and their refresh tokens.
fn end_sessions(inner: &mut Inner, pick: impl Fn(&String, &Session) -> bool) {
    inner.sessions.retain(|id, s| !pick(id, s));
    let sessions = &inner.sessions;
    inner
        .refresh
        .retain(|_, r| sessions.contains_key(&r.session_id));
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// A user as GoTrue answers it.
fn user_json(user: &User) -> Value {
    let created = rfc3339(user.created_at);
    json!({
        "id": user.id, "aud": "authenticated", "role": "authenticated",
        "email": user.email, "email_confirmed_at": created, "phone": "",
        "confirmed_at": created,
        "last_sign_in_at": user.last_sign_in_at.map(rfc3339),
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {}, "identities": [],
        "created_at": created, "updated_at": created, "is_anonymous": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AuthState {
        let s = AuthState::new(
            Secret::random(),
            Duration::from_secs(60),
            "http://x/auth/v1".into(),
        );
        s.add_user("u1", "Alice@example.com", Some("pw-123456"));
        s
    }

    #[test]
    fn a_password_signs_in_and_a_wrong_one_does_not() {
        let s = state();
        let session = s
            .sign_in_password("alice@example.com", "pw-123456")
            .unwrap();
        assert_eq!(session["user"]["id"], "u1");
        assert_eq!(session["token_type"], "bearer");
        assert!(matches!(
            s.sign_in_password("alice@example.com", "nope"),
            Err(AuthFail::InvalidCredentials)
        ));
        assert!(matches!(
            s.sign_in_password("bob@example.com", "pw-123456"),
            Err(AuthFail::InvalidCredentials)
        ));
    }

    #[test]
    fn refresh_tokens_are_single_use_and_reuse_ends_the_session() {
        let s = state();
        let first = s
            .sign_in_password("alice@example.com", "pw-123456")
            .unwrap();
        let token = first["refresh_token"].as_str().unwrap();
        let second = s.refresh(token).unwrap();
        assert!(matches!(
            s.refresh(token),
            Err(AuthFail::RefreshAlreadyUsed)
        ));
        let next = second["refresh_token"].as_str().unwrap();
        assert!(matches!(s.refresh(next), Err(AuthFail::RefreshNotFound)));
    }

    #[test]
    fn codes_work_once_and_logout_ends_sessions() {
        let s = state();
        let code = s.new_otp("alice@example.com");
        assert!(matches!(
            s.verify_otp("alice@example.com", "x"),
            Err(AuthFail::OtpInvalid)
        ));
        let session = s.verify_otp("alice@example.com", &code).unwrap();
        assert!(matches!(
            s.verify_otp("alice@example.com", &code),
            Err(AuthFail::OtpInvalid)
        ));
        let claims = s
            .secret
            .verify(session["access_token"].as_str().unwrap())
            .unwrap();
        let sid = claims.session_id.as_deref();
        assert_eq!(s.user("u1", sid).unwrap()["email"], "Alice@example.com");
        s.logout("u1", sid, "local").unwrap();
        assert!(matches!(s.user("u1", sid), Err(AuthFail::SessionNotFound)));
        let refresh = session["refresh_token"].as_str().unwrap();
        assert!(matches!(s.refresh(refresh), Err(AuthFail::RefreshNotFound)));
    }
}
