//! `POST /queue/hold` and `POST /queue/release`: the dashboard's buttons for
//! `forgehand hold` and `forgehand release`.

use axum::Extension;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{database_error, error_page};
use crate::config::RepoName;
use crate::db::queries::HOLD_ALL;
use crate::server::AppState;
use crate::server::session::{CurrentSession, check_csrf};

/// The form of both buttons: the repository (`owner/name`), or empty for the whole queue.
#[derive(Debug, Deserialize)]
pub struct HoldForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub scope: String,
}

/// `POST /queue/hold`.
pub async fn hold_queue(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Form(form): Form<HoldForm>,
) -> Response {
    change(state, session, form, true).await
}

/// `POST /queue/release`.
pub async fn release_queue(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Form(form): Form<HoldForm>,
) -> Response {
    change(state, session, form, false).await
}

async fn change(state: AppState, session: CurrentSession, form: HoldForm, on: bool) -> Response {
    if let Err(refused) = check_csrf(&session, &form.csrf) {
        return refused.into_response();
    }
    let scope = match form.scope.trim() {
        "" | HOLD_ALL => HOLD_ALL.to_owned(),
        typed => match RepoName::parse(typed) {
            Ok(repo) => repo.as_str().to_owned(),
            Err(message) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Not a repository",
                    &format!("{message}. Leave it empty to hold or release the whole queue."),
                );
            }
        },
    };
    let changed =
        if on { state.db.hold(&scope, "the dashboard").await } else { state.db.release_hold(&scope).await };
    match changed {
        Ok(_) => {
            if !on {
                state.wake.notify_one();
            }
            Redirect::to("/").into_response()
        }
        Err(err) => database_error(err),
    }
}
