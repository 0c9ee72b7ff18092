//! `helix-local-cloud`: a throwaway Supabase-like stack on one loopback origin, for the web
//! spoke's development and tests (and anyone who wants the cloud route without a project).
//!
//! One fresh PostgreSQL database with the Supabase-like bootstrap and every migration
//! (`helix-testkit`'s), dropped at exit; behind one HTTP origin:
//!
//! | path | what | module |
//! |---|---|---|
//! | `/rest/v1/*` | reverse proxy to a `postrust` child (PostgREST compatible) | [`rest`] |
//! | `/auth/v1/*` | a GoTrue stand-in: password, refresh, emailed codes, user, logout, signup | [`auth`] |
//! | `/realtime/v1/websocket` | a Realtime stand-in delivering real `postgres_changes` | [`realtime`] |
//! | `/` | the web app's static build, SPA fallback, the page's security headers | [`web`] |
//!
//! [`gateway`] does what Supabase's gateway does for `/rest` and `/auth` (CORS, the API key);
//! [`jwt`] mints and checks the HS256 tokens; [`app`] is the router; [`cloud`] starts and stops
//! the whole ([`LocalCloud`]).

pub mod app;
pub mod auth;
pub mod cloud;
pub mod gateway;
pub mod jwt;
pub mod realtime;
pub mod rest;
pub mod web;

pub use cloud::{CloudError, LocalCloud, Options, UserSpec};
