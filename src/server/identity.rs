//! Who each forge's token belongs to, for forges without `bot_login`: asked of the forge
//! at start and whenever the settings change, logged, shown on the setup page, and used
//! by intake so that forgehand's own account never triggers it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::config::{ForgeSettings, Settings};

use super::AppState;

/// What asking a forge for its token's account found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The token belongs to this login.
    Known(String),
    /// The forge could not say (a wrong token, the forge unreachable): why.
    Unknown(String),
}

/// The accounts learned per forge name (only forges with an empty `bot_login`).
#[derive(Default)]
pub struct Identities(RwLock<HashMap<String, Identity>>);

impl Identities {
    /// What is known about forge `name`'s token, if it was asked.
    pub fn get(&self, name: &str) -> Option<Identity> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// `forge` as intake judges senders: with the learned login as `bot_login` when none
    /// is configured.
    pub fn effective<'f>(&self, forge: &'f ForgeSettings) -> std::borrow::Cow<'f, ForgeSettings> {
        match self.get(&forge.name) {
            Some(Identity::Known(login)) if forge.bot_login.is_empty() => {
                std::borrow::Cow::Owned(ForgeSettings { bot_login: login, ..forge.clone() })
            }
            _ => std::borrow::Cow::Borrowed(forge),
        }
    }

    fn set(&self, name: &str, identity: Identity) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_owned(), identity);
    }

    /// Forgets forges that are gone or now have a `bot_login`.
    fn keep_only(&self, settings: &Settings) {
        let wanted = |name: &String| settings.forge(name).is_some_and(|forge| forge.bot_login.is_empty());
        self.0.write().unwrap_or_else(|e| e.into_inner()).retain(|name, _| wanted(name));
    }
}

/// Learns the accounts of the settings in force now, then again after every change, until
/// the state is dropped.
pub fn follow(state: &AppState) -> tokio::task::JoinHandle<()> {
    let mut changes = state.watch_settings();
    let identities = state.identities.clone();
    let first = state.settings();
    tokio::spawn(async move {
        learn(&identities, &first).await;
        while changes.changed().await.is_ok() {
            let settings = changes.borrow_and_update().clone();
            learn(&identities, &settings).await;
        }
    })
}

/// Asks every forge without a `bot_login` who its token belongs to.
pub async fn learn(identities: &Arc<Identities>, settings: &Settings) {
    identities.keep_only(settings);
    for forge in settings.forges.iter().filter(|forge| forge.bot_login.is_empty()) {
        let identity = ask(forge).await;
        match &identity {
            Identity::Known(login) => tracing::info!(
                forge = %forge.name, %login,
                "forge's token belongs to {login}: events that account causes never start tasks"
            ),
            Identity::Unknown(why) => tracing::warn!(
                forge = %forge.name,
                "cannot learn whom forge's token belongs to ({why}); tasks will fail until the token works, \
                 and events from forgehand's own account are told apart only by forges[].bot_login: set it"
            ),
        }
        identities.set(&forge.name, identity);
    }
}

async fn ask(forge: &ForgeSettings) -> Identity {
    let client = match crate::forge::client::connect(forge) {
        Ok(client) => client,
        Err(err) => return Identity::Unknown(err.to_string()),
    };
    match client.current_login().await {
        Ok(login) => Identity::Known(login),
        Err(err) => Identity::Unknown(err.to_string()),
    }
}
