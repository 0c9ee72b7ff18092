//! The GoTrue stand-in (`/auth/v1`): what `@supabase/auth-js` 2.109 and `helix-discovery`'s
//! `auth` send, answered the way GoTrue answers. [`state`] holds users, sessions, refresh
//! tokens and codes; [`routes`] are the HTTP side; [`AuthFail`] is every refusal with GoTrue's
//! status, error code and message.

use std::fmt;

use axum::{
    Json,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

pub mod routes;
pub mod state;

pub use state::AuthState;

/// GoTrue's API version header: a request carrying it (auth-js sends `2024-01-01`) gets error
/// bodies `{"code": "<error code>", "message"}` and the header back; one without gets the older
/// `{"code": <status>, "error_code", "msg"}`.
pub const API_VERSION_HEADER: &str = "x-supabase-api-version";
/// The version this stand-in answers with.
pub const API_VERSION: &str = "2024-01-01";

/// An emailed code, as Supabase's local mail catcher would show it.
#[derive(Clone)]
pub struct Email {
    pub to: String,
    pub code: String,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("to", &self.to)
            .field("code", &"<redacted>")
            .finish()
    }
}

impl fmt::Display for Email {
    /// The line the binary prints on stderr.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "email to {}: your code is {}", self.to, self.code)
    }
}

/// A refusal, as GoTrue words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFail {
    #[error("Invalid login credentials")]
    InvalidCredentials,
    #[error("Invalid Refresh Token: Refresh Token Not Found")]
    RefreshNotFound,
    #[error("Invalid Refresh Token: Already Used")]
    RefreshAlreadyUsed,
    #[error("Token has expired or is invalid")]
    OtpInvalid,
    #[error("Signups not allowed for otp")]
    OtpSignupsDisabled,
    #[error("User already registered")]
    UserExists,
    #[error("Password should be at least {} characters.", state::MIN_PASSWORD_LEN)]
    WeakPassword,
    #[error("This endpoint requires a valid Bearer token")]
    NoAuthorization,
    #[error("invalid JWT: unable to parse or verify signature, {0}")]
    BadJwt(String),
    #[error("Session from session_id claim in JWT does not exist")]
    SessionNotFound,
    #[error("Parameter scope must be one of global, local, others")]
    BadScope,
    #[error("Unable to validate email address: invalid format")]
    BadEmail,
    #[error("{0}")]
    Validation(String),
    #[error("Could not parse request body as JSON: {0}")]
    BadJson(String),
    #[error("unsupported_grant_type")]
    UnsupportedGrant,
    #[error("Database error: {0}")]
    Database(String),
    #[error("Unsupported request: {0} is not part of the local auth stand-in")]
    NotFound(String),
}

impl AuthFail {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidCredentials
            | Self::RefreshNotFound
            | Self::RefreshAlreadyUsed
            | Self::BadScope
            | Self::BadEmail
            | Self::Validation(_)
            | Self::BadJson(_)
            | Self::UnsupportedGrant => StatusCode::BAD_REQUEST,
            Self::NoAuthorization => StatusCode::UNAUTHORIZED,
            Self::OtpInvalid | Self::BadJwt(_) | Self::SessionNotFound => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::OtpSignupsDisabled | Self::UserExists | Self::WeakPassword => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// GoTrue's error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::RefreshNotFound => "refresh_token_not_found",
            Self::RefreshAlreadyUsed => "refresh_token_already_used",
            Self::OtpInvalid => "otp_expired",
            Self::OtpSignupsDisabled => "otp_disabled",
            Self::UserExists => "user_already_exists",
            Self::WeakPassword => "weak_password",
            Self::NoAuthorization => "no_authorization",
            Self::BadJwt(_) => "bad_jwt",
            Self::SessionNotFound => "session_not_found",
            Self::BadScope | Self::Validation(_) => "validation_failed",
            Self::BadEmail => "email_address_invalid",
            Self::BadJson(_) => "bad_json",
            Self::UnsupportedGrant => "unsupported_grant_type",
            Self::Database(_) => "unexpected_failure",
            Self::NotFound(_) => "not_found",
        }
    }

    /// The answer; `versioned` when the request carried [`API_VERSION_HEADER`].
    pub fn respond(&self, versioned: bool) -> Response {
        let message = self.to_string();
        let mut body = if versioned {
            json!({"code": self.code(), "message": message})
        } else {
            json!({"code": self.status().as_u16(), "error_code": self.code(), "msg": message})
        };
        // A password grant refused also carries the OAuth-style fields older clients read.
        if *self == Self::InvalidCredentials {
            body["error"] = json!("invalid_grant");
            body["error_description"] = json!(message);
        }
        if *self == Self::WeakPassword {
            body["weak_password"] = json!({"reasons": ["length"]});
        }
        let mut response = (self.status(), Json(body)).into_response();
        if versioned {
            response
                .headers_mut()
                .insert(API_VERSION_HEADER, HeaderValue::from_static(API_VERSION));
        }
        response
    }
}

/// Whether a request asked for versioned error bodies.
pub fn versioned(headers: &HeaderMap) -> bool {
    headers
        .get(API_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() == 10 && v.as_bytes()[4] == b'-' && v >= API_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_prints_as_the_mail_catcher_line_and_debug_hides_the_code() {
        let mail = Email {
            to: "a@example.com".into(),
            code: "012345".into(),
        };
        assert_eq!(
            mail.to_string(),
            "email to a@example.com: your code is 012345"
        );
        assert!(!format!("{mail:?}").contains("012345"));
    }

    #[test]
    fn versions_are_dates_from_2024() {
        let mut h = HeaderMap::new();
        assert!(!versioned(&h));
        h.insert(API_VERSION_HEADER, HeaderValue::from_static("2024-01-01"));
        assert!(versioned(&h));
        h.insert(API_VERSION_HEADER, HeaderValue::from_static("2023-12-31"));
        assert!(!versioned(&h));
    }
}
