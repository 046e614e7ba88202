//! `kind = "command"`: any program as forgehand's agent, here a small script
//! (tests/agent/script-agent). The prompt goes in on stdin or as an argument, plain text
//! comes out and becomes the result, and the exit code alone decides success.

use std::path::Path;

use crate::executor::{BRANCH, remote_file};
use crate::fake_forge::Dialect;
use crate::model_server::Behaviour;
use crate::real_claude::{Cli, Options, World};

fn script(prompt_via: &'static str) -> Cli {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agent/script-agent");
    Cli::Script { path, prompt_via }
}

/// The script's run for issue 42 with `prompt_via`, ended in a pull request.
async fn opens_a_pull_request(dialect: Dialect, prompt_via: &'static str) {
    let world = World::start(Options::with_cli(dialect, script(prompt_via)), Behaviour::Status(500)).await;
    let id = world.deliver_label().await;
    let task = world.finished(id).await;
    assert_eq!(task.status, "done", "{task:?}");
    let (prompt, _) = remote_file(&world.remote, BRANCH, "PROMPT.md").expect("the branch was pushed");
    assert!(
        prompt.contains("Add a --verbose flag to the CLI") && prompt.contains("The CLI needs --verbose.")
    );
    let via = if prompt_via == "arg" { "argument" } else { "stdin" };
    let said = format!("Read the prompt from {via}.\n\nWrote PROMPT.md");
    assert!(task.result_text.as_deref().unwrap_or_default().starts_with(&said), "{task:?}");
    let pulls = world.forge.pulls(world.repo);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(pulls[0].body.contains("Wrote PROMPT.md"), "{}", pulls[0].body);
    assert!(world.model.requests().is_empty(), "no model is involved");
    let browser = crate::dashboard::Browser::login(&world.app).await;
    let (status, page) = browser.get(&format!("/tasks/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("Read the prompt from {via}.")), "the task page shows the output");
}

#[tokio::test]
async fn a_command_agent_reads_the_prompt_on_stdin() {
    opens_a_pull_request(Dialect::Github, "stdin").await;
}

#[tokio::test]
async fn a_command_agent_takes_the_prompt_as_an_argument() {
    opens_a_pull_request(Dialect::Gitea, "arg").await;
}

#[tokio::test]
async fn a_command_agent_that_exits_non_zero_fails_the_task() {
    let mut options = Options::with_cli(Dialect::Github, script("stdin"));
    options.args = vec!["--exit".into(), "3".into()];
    let world = World::start(options, Behaviour::Status(500)).await;
    let task = world.finished(world.deliver_label().await).await;
    assert_eq!((task.status.as_str(), task.attempt), ("failed", 1), "{task:?}");
    assert_eq!(task.error.as_deref(), Some("the agent exited with code 3"));
    assert!(world.bot_comments()[0].contains("the agent exited with code 3"), "{:?}", world.bot_comments());
    assert!(world.forge.pulls(world.repo).is_empty());
}
