//! `data_dir` and the database: both must take writes.

use std::path::Path;

use secrecy::ExposeSecret;

use super::Finding;
use crate::config::{Settings, mask_url_password};
use crate::db::SQLITE_FILE;

/// `data_dir` exists (or can be created) and a file can be created and removed in it.
pub fn check_data_dir(settings: &Settings) -> Vec<Finding> {
    let dir = &settings.data_dir;
    let fix = "make it writable by the user forgehand runs as, or set data_dir";
    match probe_dir(dir) {
        Ok(()) => vec![Finding::ok(format!("data_dir {} is writable", dir.display()))],
        Err(err) => vec![Finding::fail(format!("data_dir {} is not writable: {err}; {fix}", dir.display()))],
    }
}

fn probe_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating it: {e}"))?;
    let name = crate::token::generate_token().map_err(|e| format!("no randomness: {e}"))?;
    let probe = dir.join(format!(".doctor-{}", &name[..16]));
    std::fs::write(&probe, b"forgehand doctor\n")
        .map_err(|e| format!("creating {}: {e}", probe.display()))?;
    std::fs::remove_file(&probe).map_err(|e| format!("removing {}: {e}", probe.display()))
}

/// The database opens, its migrations apply, and it takes a write.
pub async fn check_database(settings: &Settings) -> Vec<Finding> {
    let which = database_name(settings);
    let db = match crate::app::open_database(settings).await {
        Ok(db) => db,
        Err(err) => {
            return vec![Finding::fail(format!(
                "database {which}: {err:#}; check database.url and that data_dir is writable"
            ))];
        }
    };
    match db.check_writable().await {
        Ok(()) => vec![Finding::ok(format!("database {which}: opened, migrations applied, takes writes"))],
        Err(err) => vec![Finding::fail(format!(
            "database {which}: opened, but a write failed: {err}; give forgehand's user write access to it"
        ))],
    }
}

/// The database as it may be shown: the SQLite file, or the URL without its password.
fn database_name(settings: &Settings) -> String {
    let url = settings.database.url.expose_secret();
    if url.is_empty() {
        format!("{} (SQLite)", settings.data_dir.join(SQLITE_FILE).display())
    } else {
        mask_url_password(url)
    }
}
