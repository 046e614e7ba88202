//! What the wizard's unit tests share: settings loaded from a file, and a draft that adds
//! a GitHub forge.

use std::path::Path;

use secrecy::SecretString;

use super::checks::TokenReport;
use super::draft::{Draft, ForgeAnswers};
use crate::config::Settings;

pub(super) fn settings_from(dir: &Path, text: &str) -> Settings {
    let path = dir.join("forgehand.toml");
    std::fs::write(&path, text).unwrap();
    Settings::load_with_env(Some(&path), Default::default()).unwrap()
}

pub(super) fn base(dir: &Path) -> String {
    format!(
        "# hand-written\ndata_dir = \"{}\"\n[auth]\nadmin_token = \"admintok\"\n[agent]\nenv = {{ ANTHROPIC_API_KEY = \"sk-key\" }}\n\
         [[forges]]\nname = \"gitea\"\nkind = \"gitea\"\napi_url = \"https://git.example.com/api/v1\"\ntoken = \"old-token\"\nwebhook_secret = [\"s1\", \"s2\"]\n",
        dir.join("data").display()
    )
}

pub(super) fn github_draft(current: &Settings) -> Draft {
    let mut draft = Draft::new(current, None);
    let answers = ForgeAnswers {
        public_url: "https://fh.example.com/".into(),
        name: "github".into(),
        kind: "github".into(),
        api_url: "https://api.github.com".into(),
    };
    draft.set_forge(current, answers).unwrap();
    draft.new_token = Some(SecretString::from("ghp_new"));
    draft.checked = Some(TokenReport { login: "bot".into(), permission: None, app: Vec::new() });
    draft.generate_secret().unwrap();
    draft
}
