//! `/audit`: the audit log, newest first, filterable by action and actor, with the
//! result of re-checking its hash chain.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{PAGE_SIZE, database_error, error_page, non_empty, query_string, render, time};
use crate::db::audit::{AuditFilter, ChainCheck};
use crate::server::AppState;
use crate::server::session::CurrentSession;

/// An entry as its table row shows it.
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub peer: String,
    pub hash: String,
}

/// Query string of `/audit`.
#[derive(Deserialize)]
pub struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    before: Option<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    csrf: Option<String>,
    rows: Vec<AuditRow>,
    action: String,
    actor: String,
    chain: String,
    chain_ok: bool,
    next_page: Option<String>,
}

/// `GET /audit`.
pub async fn audit_page(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Query(query): Query<AuditQuery>,
) -> Response {
    let (action, actor) = (non_empty(query.action), non_empty(query.actor));
    let before = match non_empty(query.before).map(|b| b.parse::<i64>()) {
        Some(Err(_)) => {
            return error_page(StatusCode::BAD_REQUEST, "Bad filter", "`before` must be an entry id.");
        }
        Some(Ok(b)) => Some(b),
        None => None,
    };
    let filter = AuditFilter { action: action.clone(), actor: actor.clone(), before, limit: PAGE_SIZE };
    let (entries, check) = match (state.db.audit_list(&filter).await, state.db.audit_verify().await) {
        (Ok(entries), Ok(check)) => (entries, check),
        (Err(err), _) | (_, Err(err)) => return database_error(err),
    };
    let (chain, chain_ok) = match check {
        ChainCheck::Intact { entries } => {
            (format!("The hash chain of all {entries} entries checks out."), true)
        }
        ChainCheck::Broken { id: 0, reason } => {
            (format!("The chain is broken after the last entry: {reason}."), false)
        }
        ChainCheck::Broken { id, reason } => (format!("The chain is broken at entry {id}: {reason}."), false),
    };
    let next_page = (entries.len() as u64 == PAGE_SIZE)
        .then(|| entries.last().map(|e| e.id))
        .flatten()
        .map(|b| format!("/audit?{}", query_string(&[("action", &action), ("actor", &actor)], Some(b))));
    let rows = entries
        .into_iter()
        .map(|e| AuditRow {
            id: e.id,
            at: time(e.at),
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: e.detail,
            peer: e.peer,
            hash: e.hash.get(..12).unwrap_or_default().to_owned(),
        })
        .collect();
    let page = AuditPage {
        csrf: Some(session.csrf),
        rows,
        action: action.unwrap_or_default(),
        actor: actor.unwrap_or_default(),
        chain,
        chain_ok,
        next_page,
    };
    render(StatusCode::OK, &page)
}
