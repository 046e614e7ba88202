//! The setup wizard's pages: `GET /setup/wizard` starts (adding a forge, or `?forge=NAME`
//! to change one), `GET /setup/wizard/{step}` shows a step, `POST /setup/wizard/{step}`
//! takes its answers. The answers stay on the server, per session ([`Drafts`]); a page
//! never carries a configured secret, and a generated webhook secret is shown once. The
//! work itself is in the submodules: the answers ([`draft`]), live checks ([`checks`]),
//! and the file and writing it ([`file`]).

pub mod checks;
pub mod draft;
pub mod file;
#[cfg(test)]
mod fixtures;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::AppState;
use super::pages::{self, render};
use super::session::{CurrentSession, SESSION_TTL, check_csrf};
use crate::config::{ForgeKind, Settings};

use draft::{AgentAnswers, Auth, CredentialAnswers, Draft, ForgeAnswers, Problems, Step};

/// Held while a config file is planned and written.
static SAVING: Mutex<()> = Mutex::new(());

/// Unsaved wizard answers, keyed by the session's CSRF token (as secret as the session).
#[derive(Default)]
pub struct Drafts(Mutex<HashMap<String, (Instant, Draft)>>);

impl Drafts {
    fn get(&self, session: &CurrentSession) -> Option<Draft> {
        let drafts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        drafts.get(&session.csrf).map(|(_, draft)| draft.clone())
    }

    fn put(&self, session: &CurrentSession, draft: Draft) {
        let mut drafts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        drafts.retain(|_, (at, _)| at.elapsed() < SESSION_TTL);
        drafts.insert(session.csrf.clone(), (Instant::now(), draft));
    }

    /// Drops the session's answers (secrets typed in the wizard included), e.g. on logout.
    pub fn forget(&self, session: &CurrentSession) {
        self.remove(session);
    }

    fn remove(&self, session: &CurrentSession) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&session.csrf);
    }
}

/// A step in the wizard's progress bar.
pub struct StepLink {
    pub number: usize,
    pub slug: &'static str,
    pub title: &'static str,
    /// `done`, `current`, `open` (reachable), `locked`, or `saved` (all, after saving).
    pub state: &'static str,
}

/// One agent profile as the agent step lists it: name, kind, model, own limit, fallback.
pub struct ProfileView {
    pub name: String,
    pub kind: String,
    pub model: String,
    pub max_concurrent: String,
    pub fallback: String,
}

/// The configured profiles, as the agent step lists them (the wizard keeps them as they are).
fn profile_views(settings: &Settings) -> Vec<ProfileView> {
    settings
        .profile_names()
        .into_iter()
        .filter_map(|name| {
            let agent = settings.profile(name)?;
            Some(ProfileView {
                name: name.to_owned(),
                kind: format!("{:?}", agent.kind).to_lowercase(),
                model: if agent.model.is_empty() { "(the CLI's default)".into() } else { agent.model },
                max_concurrent: agent.max_concurrent.map_or("-".into(), |n| n.to_string()),
                fallback: agent.fallback.unwrap_or_else(|| "-".into()),
            })
        })
        .collect()
}

/// The draft as the pages show it: no secret in here except a generated webhook secret
/// on the one page that shows it.
pub struct DraftView {
    pub editing: bool,
    pub public_url: String,
    pub name: String,
    pub kind: String,
    pub api_url: String,
    pub api_hint: &'static str,
    /// The kinds to choose from.
    pub kinds: Vec<KindChoice>,
    /// What the bot's token needs, for this kind (may hold markup).
    pub token_advice: &'static str,
    pub token_set: bool,
    /// GitHub: an App may stand in for the token.
    pub app_possible: bool,
    /// The App is chosen (else the token).
    pub app_chosen: bool,
    pub app_id: String,
    pub private_key_set: bool,
    /// The App's permissions and events, for the page.
    pub app_permissions: Vec<String>,
    pub token_report: Vec<String>,
    pub repo: String,
    pub secret_set: bool,
    pub secret_generated: bool,
    pub secret_once: Option<String>,
    pub webhook_url: String,
    pub where_to: &'static str,
    pub events: Vec<&'static str>,
    /// The events a GitHub App subscribes to.
    pub app_events: Vec<&'static str>,
    pub reachability: Option<&'static str>,
    pub label: String,
    pub command: String,
    pub agent_command: String,
    pub agent_found: Option<(String, String)>,
    pub max_concurrent: usize,
    pub timeout_secs: u64,
    pub timeout_human: String,
    /// The agent profiles configured now (`[agent]` as `default`, then `[[agents]]`).
    pub profiles: Vec<ProfileView>,
}

/// One forge kind offered in the first step.
pub struct KindChoice {
    pub value: String,
    pub name: &'static str,
    pub api_hint: &'static str,
}

fn kind_choices() -> Vec<KindChoice> {
    let choice = |kind: ForgeKind| {
        let dialect = crate::forge::dialect(kind);
        KindChoice { value: kind.to_string(), name: dialect.name, api_hint: dialect.setup.api_hint }
    };
    ForgeKind::ALL.into_iter().map(choice).collect()
}

/// What the review step shows.
pub struct Review {
    pub path: String,
    pub replaces: bool,
    pub masked: String,
}

/// What saving did.
pub struct Done {
    pub path: String,
    pub backup: Option<String>,
    pub webhook_url: String,
    pub restart: Vec<&'static str>,
    pub overridden: Vec<&'static str>,
    pub discovered: bool,
}

#[derive(Template)]
#[template(path = "wizard.html")]
struct WizardPage {
    csrf: Option<String>,
    step: &'static str,
    title: &'static str,
    steps: Vec<StepLink>,
    problems: Problems,
    d: DraftView,
    review: Option<Review>,
    done: Option<Done>,
}

/// Query string of `GET /setup/wizard`.
#[derive(Deserialize)]
pub struct StartQuery {
    forge: Option<String>,
}

/// Every field any step posts; each step reads its own.
#[derive(Deserialize, Default)]
pub struct WizardForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    public_url: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    api_url: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    repo: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    command: String,
    #[serde(default)]
    agent_command: String,
    #[serde(default)]
    max_concurrent: String,
    #[serde(default)]
    timeout_secs: String,
}

/// `GET /setup/wizard[?forge=NAME]`: a fresh draft, then the first step.
pub async fn start(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Query(query): Query<StartQuery>,
) -> Response {
    let settings = state.settings();
    let forge = query.forge.filter(|name| !name.is_empty());
    if let Some(name) = &forge
        && settings.forge(name).is_none()
    {
        return pages::error_page(
            StatusCode::NOT_FOUND,
            "No such forge",
            "That forge is not configured. Start the wizard from the setup page.",
        );
    }
    state.drafts.put(&session, Draft::new(&settings, forge.as_deref()));
    Redirect::to("/setup/wizard/forge").into_response()
}

/// `GET /setup/wizard/{step}`.
pub async fn show(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Path(slug): Path<String>,
) -> Response {
    let Some(step) = Step::from_slug(&slug) else {
        return pages::not_found_page().await;
    };
    let Some(mut draft) = state.drafts.get(&session) else {
        return Redirect::to("/setup/wizard").into_response();
    };
    if step > draft.reached {
        return Redirect::to(&format!("/setup/wizard/{}", draft.reached.slug())).into_response();
    }
    let settings = state.settings();
    let once = (step == Step::Webhook && !draft.secret_shown)
        .then(|| draft.new_secret.as_ref().map(|s| s.expose_secret().to_owned()))
        .flatten();
    if once.is_some() {
        draft.secret_shown = true;
        state.drafts.put(&session, draft.clone());
    }
    let review = if step == Step::Review { Some(plan(&draft, &settings)) } else { None };
    match review {
        Some(Err(problems)) => page(&session, step, &draft, &settings, problems, None, None, None),
        Some(Ok(review)) => page(&session, step, &draft, &settings, vec![], None, Some(review), None),
        None => page(&session, step, &draft, &settings, vec![], once, None, None),
    }
}

/// `POST /setup/wizard/{step}`: takes the step's answers; on to the next step, or the
/// same step again with what to fix (400).
pub async fn submit(
    State(state): State<AppState>,
    Extension(session): Extension<CurrentSession>,
    Path(slug): Path<String>,
    Form(form): Form<WizardForm>,
) -> Response {
    if let Err(refused) = check_csrf(&session, &form.csrf) {
        return refused.into_response();
    }
    let Some(step) = Step::from_slug(&slug) else {
        return pages::not_found_page().await;
    };
    let Some(mut draft) = state.drafts.get(&session) else {
        return Redirect::to("/setup/wizard").into_response();
    };
    if step > draft.reached {
        return Redirect::to(&format!("/setup/wizard/{}", draft.reached.slug())).into_response();
    }
    let settings = state.settings();
    if step == Step::Review {
        return save(&state, &session, draft, settings).await;
    }
    let outcome = answer(&mut draft, step, &settings, form).await;
    state.drafts.put(&session, draft.clone());
    match outcome {
        Ok(next) => Redirect::to(&format!("/setup/wizard/{}", next.slug())).into_response(),
        Err(problems) => page(&session, step, &draft, &settings, problems, None, None, None),
    }
}

/// Applies one step's answers; the step to show next.
async fn answer(
    draft: &mut Draft,
    step: Step,
    settings: &Settings,
    form: WizardForm,
) -> Result<Step, Problems> {
    match step {
        Step::Forge => {
            let answers = ForgeAnswers {
                public_url: form.public_url,
                name: form.name,
                kind: form.kind,
                api_url: form.api_url,
            };
            draft.set_forge(settings, answers).map(|()| Step::Token)
        }
        Step::Token => {
            let answers = CredentialAnswers {
                auth: form.auth,
                token: form.token,
                app_id: form.app_id,
                private_key: form.private_key,
                repo: form.repo,
            };
            draft.set_credentials(settings, answers).await.map(|()| Step::Webhook)
        }
        Step::Webhook if form.action == "generate" => {
            draft.generate_secret().map_err(|e| vec![format!("Cannot generate a secret: {e}")])?;
            Ok(Step::Webhook)
        }
        Step::Webhook => draft.confirm_webhook(settings).map(|()| Step::Trigger),
        Step::Trigger => draft.set_trigger(settings, &form.label, &form.command).map(|()| Step::Agent),
        Step::Agent => {
            let answers = AgentAnswers {
                command: form.agent_command,
                max_concurrent: form.max_concurrent,
                timeout_secs: form.timeout_secs,
            };
            draft.set_agent(settings, answers).await.map(|()| Step::Review)
        }
        Step::Review => Ok(Step::Review),
    }
}

fn plan(draft: &Draft, settings: &Settings) -> Result<Review, Problems> {
    let plan = file::plan(draft, settings, &settings.config_target())?;
    Ok(Review { path: plan.path.display().to_string(), replaces: plan.replaces, masked: plan.masked })
}

/// Writes the file, then puts the settings it gives in force.
async fn save(state: &AppState, session: &CurrentSession, draft: Draft, settings: Arc<Settings>) -> Response {
    let path = settings.config_target();
    let saved = {
        let (draft, settings, path) = (draft.clone(), settings.clone(), path.clone());
        // File work blocks; one save at a time, so two people cannot interleave theirs.
        tokio::task::spawn_blocking(move || {
            let _one_at_a_time = SAVING.lock().unwrap_or_else(|e| e.into_inner());
            file::plan(&draft, &settings, &path).and_then(|plan| file::save(&plan))
        })
        .await
        .unwrap_or_else(|err| {
            Err(vec![format!("Saving stopped unexpectedly ({err}); nothing was replaced.")])
        })
    };
    let settings = settings.as_ref();
    let saved = match saved {
        Ok(saved) => saved,
        Err(problems) => {
            let review = plan(&draft, settings).ok();
            return page(session, Step::Review, &draft, settings, problems, None, review, None);
        }
    };
    let changed = crate::config::changed_keys(settings, &saved.settings);
    let detail = if changed.is_empty() { "no key changed".to_owned() } else { changed.join(", ") };
    crate::server::audit(state, "admin", "config_save", &path.display().to_string(), &detail, "").await;
    let done = Done {
        path: path.display().to_string(),
        backup: saved.backup.as_ref().map(|b| b.display().to_string()),
        webhook_url: webhook_url(&saved.settings.server.public_url, &draft.name),
        restart: file::restart_needed(settings, &saved.settings),
        overridden: file::overridden(&draft, &saved.settings),
        discovered: settings.config_file.is_none(),
    };
    tracing::info!(file = %path.display(), forge = %draft.name, "the setup wizard wrote the configuration; applying it");
    state.replace_settings(saved.settings);
    state.drafts.remove(session);
    let current = state.settings();
    page(session, Step::Review, &draft, &current, vec![], None, None, Some(done))
}

#[allow(clippy::too_many_arguments)]
fn page(
    session: &CurrentSession,
    step: Step,
    draft: &Draft,
    settings: &Settings,
    problems: Problems,
    secret_once: Option<String>,
    review: Option<Review>,
    done: Option<Done>,
) -> Response {
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let steps = Step::ALL
        .iter()
        .enumerate()
        .map(|(i, s)| StepLink {
            number: i + 1,
            slug: s.slug(),
            title: s.title(),
            state: match s {
                _ if done.is_some() => "saved",
                s if *s == step => "current",
                s if *s < draft.reached => "done",
                s if *s <= draft.reached => "open",
                _ => "locked",
            },
        })
        .collect();
    let page = WizardPage {
        csrf: Some(session.csrf.clone()),
        step: step.slug(),
        title: if done.is_some() { "Saved" } else { step.title() },
        steps,
        problems,
        d: view(draft, settings, secret_once),
        review,
        done,
    };
    render(status, &page)
}

fn view(draft: &Draft, settings: &Settings, secret_once: Option<String>) -> DraftView {
    let setup = &crate::forge::dialect(draft.kind).setup;
    DraftView {
        editing: draft.editing.is_some(),
        public_url: draft.public_url.clone(),
        name: draft.name.clone(),
        kind: draft.kind.to_string(),
        api_url: draft.api_url.clone(),
        api_hint: setup.api_hint,
        kinds: kind_choices(),
        token_advice: setup.token_advice,
        token_set: draft.token_set(settings),
        app_possible: draft.kind == ForgeKind::Github,
        app_chosen: draft.auth == Auth::App,
        app_id: match draft.forge(settings).app_id {
            _ if !draft.typed_app_id.is_empty() => draft.typed_app_id.clone(),
            Some(id) => id.to_string(),
            None => String::new(),
        },
        private_key_set: draft.auth == Auth::App && draft.private_key_set(settings),
        app_permissions: crate::forge::github_app::NEEDED_PERMISSIONS
            .iter()
            .map(|(_, _, shown)| format!("{shown}: read & write"))
            .collect(),
        token_report: draft.checked.as_ref().map(|r| r.lines()).unwrap_or_default(),
        repo: draft.repo.clone(),
        secret_set: draft.secret_set(settings),
        secret_generated: draft.new_secret.is_some(),
        secret_once,
        webhook_url: webhook_url(&draft.public_url, &draft.name),
        where_to: if draft.auth == Auth::App {
            crate::forge::github_app::WEBHOOK_STEPS
        } else {
            setup.webhook_steps
        },
        events: if draft.auth == Auth::App {
            crate::forge::github_app::EVENTS.to_vec()
        } else {
            setup.events.to_vec()
        },
        app_events: crate::forge::github_app::EVENTS.to_vec(),
        reachability: reachability(&draft.public_url, draft.kind),
        label: draft.label.clone(),
        command: draft.command.clone(),
        agent_command: draft.agent_command.clone(),
        agent_found: draft.agent.as_ref().map(|a| (a.path.display().to_string(), a.version.clone())),
        max_concurrent: draft.max_concurrent,
        timeout_secs: draft.timeout_secs,
        timeout_human: pages::duration(chrono::Duration::seconds(draft.timeout_secs as i64)),
        profiles: profile_views(settings),
    }
}

fn webhook_url(public_url: &str, forge: &str) -> String {
    format!("{}/webhooks/{forge}", public_url.trim_end_matches('/'))
}

/// A warning when the forge is unlikely to reach `public_url`.
fn reachability(public_url: &str, kind: ForgeKind) -> Option<&'static str> {
    let host = public_url.split("://").nth(1)?.split(['/', ':']).next()?;
    let local = host == "localhost" || host.starts_with("127.") || host == "[::1]";
    local.then_some(crate::forge::dialect(kind).setup.loopback_warning)
}
