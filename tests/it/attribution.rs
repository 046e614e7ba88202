//! Commits credit the person who asked (`Co-authored-by:`) and, with `git.signing_key`,
//! carry an SSH signature that `git verify-commit` accepts.

use std::path::Path;
use std::process::Command;

use crate::executor::{BRANCH, Setup, World};
use crate::fake_forge::{Dialect, user_id};

/// The full message of the head commit of `branch` on the bare remote.
fn head_message(remote: &Path, branch: &str) -> String {
    let repo = git2::Repository::open_bare(remote).unwrap();
    let commit = repo.find_reference(&format!("refs/heads/{branch}")).unwrap().peel_to_commit().unwrap();
    commit.message().unwrap().to_owned()
}

async fn requester_is_credited(dialect: Dialect, email: &str) {
    let world = World::start(Setup::new(dialect)).await;
    let id = world.deliver_label().await;
    let task = world.finished(id).await;
    assert_eq!(task.status, "done", "{task:?}");
    let message = head_message(&world.remote, BRANCH);
    let trailers: Vec<&str> = message.lines().skip_while(|l| !l.is_empty()).skip(1).collect();
    assert_eq!(
        trailers,
        [format!("forgehand-task: {id}"), format!("Co-authored-by: alice <{email}>")],
        "{message}"
    );
    let profile_reads = world.forge.requests().iter().filter(|r| r.path.ends_with("/users/alice")).count();
    assert_eq!(profile_reads, 1, "the requester's profile is read once per commit");
}

#[tokio::test]
async fn github_commits_credit_the_requester_by_their_noreply_address() {
    // The fake GitHub is reached like an Enterprise Server, whose no-reply host is its own.
    let email = format!("{}+alice@users.noreply.127.0.0.1", user_id("alice"));
    requester_is_credited(Dialect::Github, &email).await;
}

#[tokio::test]
async fn gitea_commits_credit_the_requester_by_the_address_the_api_shows() {
    // The fake Gitea shows a private address's placeholder, as Gitea does.
    requester_is_credited(Dialect::Gitea, "alice@noreply.localhost").await;
}

fn ssh_keygen(args: &[&str]) {
    let out =
        Command::new("ssh-keygen").args(args).output().expect("ssh-keygen is installed (scripts/test.sh)");
    assert!(out.status.success(), "ssh-keygen {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `git verify-commit` of `branch` in `remote`, trusting `allowed` as the signers file.
fn verify_commit(remote: &Path, branch: &str, allowed: &Path) -> std::process::Output {
    Command::new("git")
        .arg("-C")
        .arg(remote)
        .args(["-c", "gpg.format=ssh", "-c"])
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", "--raw", branch])
        .output()
        .unwrap()
}

#[tokio::test]
async fn commits_signed_with_the_ssh_key_pass_git_verify_commit() {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("signing");
    ssh_keygen(&["-q", "-t", "ed25519", "-N", "", "-C", "forgehand", "-f", key.to_str().unwrap()]);
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(&allowed, format!("forgehand@test namespaces=\"git\" {public}")).unwrap();

    let mut setup = Setup::new(Dialect::Github);
    setup.git_extra = format!("signing_key = \"{}\"", key.display());
    let world = World::start(setup).await;
    let id = world.deliver_label().await;
    assert_eq!(world.finished(id).await.status, "done");

    let verified = verify_commit(&world.remote, BRANCH, &allowed);
    let said = String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "git verify-commit refused the commit: {said}");
    assert!(said.contains("Good \"git\" signature for forgehand@test"), "{said}");
    assert!(head_message(&world.remote, BRANCH).contains(&format!("forgehand-task: {id}")));

    // Another key is not trusted: the check above could fail.
    let other = keys.path().join("other");
    ssh_keygen(&["-q", "-t", "ed25519", "-N", "", "-f", other.to_str().unwrap()]);
    let other_public = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    std::fs::write(&allowed, format!("forgehand@test namespaces=\"git\" {other_public}")).unwrap();
    assert!(!verify_commit(&world.remote, BRANCH, &allowed).status.success());
}

#[tokio::test]
async fn a_signing_key_that_is_not_a_private_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing");
    ssh_keygen(&["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()]);
    let config = dir.path().join("forgehand.toml");
    let text = crate::harness::config_text(&dir.path().join("data"), "").await;
    for (path, said) in [
        (key.with_extension("pub"), "is not an SSH private key; give the private key file, not the .pub"),
        (dir.path().join("missing"), "git.signing_key: cannot read"),
    ] {
        std::fs::write(&config, format!("{text}\n[git]\nsigning_key = \"{}\"\n", path.display())).unwrap();
        let err = forgehand::config::Settings::load_with_env(Some(&config), Default::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(said), "{err}");
    }
}
