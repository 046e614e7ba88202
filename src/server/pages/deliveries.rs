//! `/deliveries`: every webhook delivery and what became of it.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{PAGE_SIZE, database_error, error_page, non_empty, query_string, render, time};
use crate::db::dashboard::DeliveryQuery;
use crate::db::entities::{deliveries, refused_deliveries};
use crate::server::AppState;
use crate::server::session::CurrentSession;

/// A delivery as a table row shows it.
pub struct DeliveryRow {
    pub id: i64,
    pub received: String,
    pub forge: String,
    pub event: String,
    pub repo: String,
    pub number: Option<i64>,
    pub sender: String,
    pub outcome: String,
    pub reason: String,
    pub task_id: Option<i64>,
}

pub(super) fn delivery_row(d: &deliveries::Model) -> DeliveryRow {
    let event = match &d.action {
        Some(action) => format!("{} / {action}", d.event),
        None => d.event.clone(),
    };
    DeliveryRow {
        id: d.id,
        received: time(d.received_at),
        forge: d.forge.clone(),
        event,
        repo: d.repo.clone().unwrap_or_default(),
        number: d.number,
        sender: d.sender.clone().unwrap_or_default(),
        outcome: d.outcome.clone(),
        reason: d.reason.clone(),
        task_id: d.task_id,
    }
}

/// A refused delivery as its table row shows it.
pub struct RefusedRow {
    pub received: String,
    pub forge: String,
    pub status: i32,
    pub event: String,
    pub delivery_id: String,
    pub source: String,
    pub reason: String,
}

fn refused_row(r: refused_deliveries::Model) -> RefusedRow {
    RefusedRow {
        received: time(r.received_at),
        forge: r.forge,
        status: r.status,
        event: r.event.unwrap_or_default(),
        delivery_id: r.delivery_id.unwrap_or_default(),
        source: r.source.unwrap_or_default(),
        reason: r.reason,
    }
}

/// Refused deliveries shown on the first page of `/deliveries`.
const REFUSED_SHOWN: u64 = 50;

/// Query string of `/deliveries`.
#[derive(Deserialize)]
pub struct DeliveriesQuery {
    outcome: Option<String>,
    forge: Option<String>,
    before: Option<String>,
}

#[derive(Template)]
#[template(path = "deliveries.html")]
struct DeliveriesPage {
    csrf: Option<String>,
    rows: Vec<DeliveryRow>,
    outcomes: Vec<&'static str>,
    forges: Vec<String>,
    outcome: String,
    forge: String,
    next_page: Option<String>,
    refused: Vec<RefusedRow>,
    kept: i64,
}

const OUTCOMES: [&str; 5] = ["task_created", "ignored", "coalesced", "cancelled_task", "pending"];

/// `GET /deliveries`.
pub async fn deliveries_page(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Query(query): Query<DeliveriesQuery>,
) -> Response {
    let outcome = non_empty(query.outcome);
    let forge = non_empty(query.forge);
    let before = match non_empty(query.before).map(|b| b.parse::<i64>()) {
        Some(Err(_)) => {
            return error_page(StatusCode::BAD_REQUEST, "Bad filter", "`before` must be a delivery id.");
        }
        Some(Ok(b)) => Some(b),
        None => None,
    };
    let filter = DeliveryQuery { outcome: outcome.clone(), forge: forge.clone(), before, limit: PAGE_SIZE };
    let page = match state.db.dashboard_deliveries(&filter).await {
        Ok(page) => page,
        Err(err) => return database_error(err),
    };
    // The refusals come first, unfiltered, on the first page only: they are few and recent.
    let first_page = before.is_none() && outcome.is_none();
    let refused = match first_page {
        true => match state.db.recent_refusals(REFUSED_SHOWN).await {
            Ok(rows) => rows,
            Err(err) => return database_error(err),
        },
        false => Vec::new(),
    };
    let refused: Vec<RefusedRow> = refused
        .into_iter()
        .filter(|r| forge.as_ref().is_none_or(|f| *f == r.forge))
        .map(refused_row)
        .collect();
    let pairs = [("outcome", &outcome), ("forge", &forge)];
    let next_page = page.next_before.map(|b| format!("/deliveries?{}", query_string(&pairs, Some(b))));
    let page = DeliveriesPage {
        csrf: Some(session.csrf),
        rows: page.rows.iter().map(delivery_row).collect(),
        outcomes: OUTCOMES.to_vec(),
        forges: state.settings().forges.iter().map(|f| f.name.clone()).collect(),
        outcome: outcome.unwrap_or_default(),
        forge: forge.unwrap_or_default(),
        next_page,
        refused,
        kept: crate::db::REFUSALS_KEPT,
    };
    render(StatusCode::OK, &page)
}
