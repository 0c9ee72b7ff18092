//! The `/auth/v1` routes. Bodies are read as JSON whatever their `Content-Type` (auth-js sends
//! `application/json;charset=UTF-8`), and every refusal is an [`AuthFail`] in GoTrue's shape.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{AuthFail, Email, state::MIN_PASSWORD_LEN, versioned};
use crate::app::Shared;

/// The routes, to be nested under `/auth/v1`.
pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/token", post(token))
        .route("/otp", post(otp))
        .route("/verify", post(verify))
        .route("/signup", post(signup))
        .route("/user", get(user))
        .route("/logout", post(logout))
        .route("/settings", get(settings))
        .route("/health", get(health))
        .fallback(|headers: HeaderMap, uri: axum::http::Uri| async move {
            AuthFail::NotFound(uri.path().to_owned()).respond(versioned(&headers))
        })
}

/// A route's answer: a JSON body, or a refusal.
type Answer = Result<Response, AuthFail>;

/// Runs a route and turns its refusal into GoTrue's error body.
fn finish(headers: &HeaderMap, answer: Answer) -> Response {
    answer.unwrap_or_else(|fail| fail.respond(versioned(headers)))
}

fn body_json(body: &Bytes) -> Result<Value, AuthFail> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| AuthFail::BadJson(e.to_string()))
}

fn text<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str)
}

fn valid_email(email: &str) -> Result<&str, AuthFail> {
    let email = email.trim();
    let ok = email.len() <= 255
        && !email.chars().any(char::is_whitespace)
        && email
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
    ok.then_some(email).ok_or(AuthFail::BadEmail)
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = async {
        let body = body_json(&body)?;
        let session = match query.get("grant_type").map(String::as_str) {
            Some("password") => {
                let email = text(&body, "email").ok_or(AuthFail::InvalidCredentials)?;
                let password = text(&body, "password").ok_or(AuthFail::InvalidCredentials)?;
                shared.auth.sign_in_password(email, password)?
            }
            Some("refresh_token") => {
                let token = text(&body, "refresh_token").ok_or(AuthFail::RefreshNotFound)?;
                shared.auth.refresh(token)?
            }
            _ => return Err(AuthFail::UnsupportedGrant),
        };
        Ok(Json(session).into_response())
    }
    .await;
    finish(&headers, answer)
}

/// Inserts a user's `auth.users` row and remembers them; `UserExists` when the email is taken.
async fn create_user(shared: &Shared, email: &str, password: Option<&str>) -> Result<(), AuthFail> {
    let id = uuid::Uuid::new_v4().to_string();
    match shared
        .db
        .execute(
            "insert into auth.users (id, email) values ($1::text::uuid, $2::text)",
            &[&id, &email],
        )
        .await
    {
        Ok(_) => {
            shared.auth.add_user(&id, email, password);
            info!(%email, "user signed up");
            Ok(())
        }
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            Err(AuthFail::UserExists)
        }
        Err(e) => Err(AuthFail::Database(e.to_string())),
    }
}

async fn otp(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = async {
        let body = body_json(&body)?;
        let Some(email) = text(&body, "email") else {
            return Err(AuthFail::Validation(
                "only email codes are supported by the local auth stand-in".into(),
            ));
        };
        let email = valid_email(email)?;
        if shared.auth.user_id(email).is_none() {
            let create = body
                .get("create_user")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if !create {
                return Err(AuthFail::OtpSignupsDisabled);
            }
            match create_user(&shared, email, None).await {
                // Created by a concurrent request: send the code all the same.
                Ok(()) | Err(AuthFail::UserExists) => {}
                Err(e) => return Err(e),
            }
        }
        let code = shared.auth.new_otp(email);
        let mail = Email {
            to: email.to_owned(),
            code,
        };
        if shared.mail.try_send(mail).is_err() {
            warn!(%email, "the mail outbox is full or closed; this code was not shown");
        }
        Ok(Json(json!({})).into_response())
    }
    .await;
    finish(&headers, answer)
}

async fn verify(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = async {
        let body = body_json(&body)?;
        match text(&body, "type") {
            Some("email" | "magiclink" | "signup") => {}
            other => {
                return Err(AuthFail::Validation(format!(
                    "verify type {other:?} is not supported by the local auth stand-in (email, magiclink)"
                )));
            }
        }
        let (Some(email), Some(token)) = (text(&body, "email"), text(&body, "token")) else {
            return Err(AuthFail::Validation(
                "the local auth stand-in verifies an email and its token".into(),
            ));
        };
        let session = shared.auth.verify_otp(email.trim(), token.trim())?;
        Ok(Json(session).into_response())
    }
    .await;
    finish(&headers, answer)
}

async fn signup(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = async {
        let body = body_json(&body)?;
        let email = valid_email(text(&body, "email").ok_or(AuthFail::BadEmail)?)?;
        let password = text(&body, "password").unwrap_or_default();
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(AuthFail::WeakPassword);
        }
        if shared.auth.user_id(email).is_some() {
            return Err(AuthFail::UserExists);
        }
        create_user(&shared, email, Some(password)).await?;
        // Email confirmation is off (as in a local Supabase): signing up signs in.
        let session = shared.auth.sign_in_password(email, password)?;
        Ok(Json(session).into_response())
    }
    .await;
    finish(&headers, answer)
}

/// The verified claims of the request's bearer token that names a user.
fn bearer(shared: &Shared, headers: &HeaderMap) -> Result<crate::jwt::Claims, AuthFail> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or(AuthFail::NoAuthorization)?;
    let claims = shared
        .secret
        .verify(token.trim())
        .map_err(|e| AuthFail::BadJwt(e.to_string()))?;
    if claims.sub.is_none() {
        return Err(AuthFail::BadJwt("invalid claim: missing sub claim".into()));
    }
    Ok(claims)
}

async fn user(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let answer = bearer(&shared, &headers).and_then(|claims| {
        let sub = claims.sub.unwrap_or_default();
        let user = shared.auth.user(&sub, claims.session_id.as_deref())?;
        Ok(Json(user).into_response())
    });
    finish(&headers, answer)
}

async fn logout(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let answer = bearer(&shared, &headers).and_then(|claims| {
        let scope = query.get("scope").map_or("global", String::as_str);
        let sub = claims.sub.unwrap_or_default();
        shared
            .auth
            .logout(&sub, claims.session_id.as_deref(), scope)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    });
    finish(&headers, answer)
}

async fn settings() -> Json<Value> {
    Json(json!({
        "external": {"email": true, "phone": false},
        "disable_signup": false, "mailer_autoconfirm": true, "phone_autoconfirm": false,
        "sms_provider": "", "saml_enabled": false,
    }))
}

async fn health() -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"), "name": "GoTrue",
        "description": "helix-local-cloud's stand-in for Supabase Auth",
    }))
}
