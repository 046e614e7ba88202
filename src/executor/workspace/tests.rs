use super::mirror::{check_url, mirror_dir_name};
use super::worktree::head_id;
use super::*;
use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Oid, Signature};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use tempfile::TempDir;

/// An upstream bare repository with one commit on `main`, and workspaces beside it.
struct Fixture {
    tmp: TempDir,
    upstream: PathBuf,
    url: String,
    workspaces: Workspaces,
}

fn fixture() -> Fixture {
    let tmp = TempDir::new().unwrap();
    let upstream = tmp.path().join("upstream.git");
    let repo = Repository::init_bare(&upstream).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    let files = [("README.md", "hello\n"), ("src/lib.rs", "pub fn answer() -> u32 { 42 }\n")];
    upstream_commit(&upstream, "main", &files, &[], "initial commit");
    let url = format!("file://{}", upstream.display());
    let workspaces = Workspaces::new(tmp.path().join("data/workspaces"));
    Fixture { tmp, upstream, url, workspaces }
}

/// Commits `files` (and deletes `removed`) on `branch` of a bare repository, as
/// someone else pushing to the forge would.
fn upstream_commit(
    repo: &Path,
    branch: &str,
    files: &[(&str, &str)],
    removed: &[&str],
    message: &str,
) -> Oid {
    let repo = Repository::open_bare(repo).unwrap();
    let refname = format!("refs/heads/{branch}");
    let parent = repo.find_reference(&refname).ok().map(|r| r.peel_to_commit().unwrap());
    let empty = repo.treebuilder(None).unwrap().write().unwrap();
    let baseline = match &parent {
        Some(commit) => commit.tree().unwrap(),
        None => repo.find_tree(empty).unwrap(),
    };
    let mut update = TreeUpdateBuilder::new();
    for (path, content) in files {
        let blob = repo.blob(content.as_bytes()).unwrap();
        update.upsert(*path, blob, FileMode::Blob);
    }
    for path in removed {
        update.remove(*path);
    }
    let tree = repo.find_tree(update.create_updated(&repo, &baseline).unwrap()).unwrap();
    let someone = Signature::now("Someone", "someone@example.com").unwrap();
    let parents: Vec<_> = parent.iter().collect();
    repo.commit(Some(&refname), &someone, &someone, message, &tree, &parents).unwrap()
}

fn branch_head(repo: &Path, branch: &str) -> Option<Oid> {
    let repo = Repository::open(repo).unwrap();
    let reference = repo.find_reference(&format!("refs/heads/{branch}")).ok()?;
    reference.target()
}

fn origin_url(repo: &Path) -> String {
    let repo = Repository::open(repo).unwrap();
    let remote = repo.find_remote("origin").unwrap();
    remote.url().unwrap().to_owned()
}

fn creds(token: &str) -> GitCredentials {
    GitCredentials { username: "x-access-token".into(), token: SecretString::from(token) }
}

const KEY: &str = "github/octo-org/hello-world";

#[test]
fn first_sync_clones_later_syncs_only_fetch() {
    let f = fixture();
    let mirror = f.workspaces.sync_mirror(KEY, &f.url, None, &[]).unwrap();
    assert!(Repository::open_bare(&mirror).unwrap().is_bare());
    assert_eq!(origin_url(&mirror), f.url);
    let main = branch_head(&f.upstream, "main");
    assert_eq!(branch_head(&mirror, "main"), main);
    let inode = fs::metadata(&mirror).unwrap().ino();
    fs::write(mirror.join("marker"), "still the first clone").unwrap();

    let newer = upstream_commit(&f.upstream, "main", &[("a.txt", "a")], &[], "more");
    let feature = upstream_commit(&f.upstream, "feature", &[("b", "b")], &[], "b");
    assert_eq!(f.workspaces.sync_mirror(KEY, &f.url, None, &[]).unwrap(), mirror);

    assert_eq!(fs::metadata(&mirror).unwrap().ino(), inode);
    assert!(mirror.join("marker").exists(), "the second sync cloned again");
    assert_eq!(branch_head(&mirror, "main"), Some(newer));
    assert_eq!(branch_head(&mirror, "feature"), Some(feature));
}

/// A task's sync downloads nothing while its base and branch are where the mirror has
/// them, whatever else was pushed; once one of them moves, appears or goes, it fetches
/// everything (and prunes).
#[test]
fn a_sync_fetches_only_when_a_branch_the_task_needs_changed() {
    let f = fixture();
    let needed = ["main", "forgehand/issue-1"];
    let mirror = f.workspaces.sync_mirror(KEY, &f.url, None, &needed).unwrap();
    let other = upstream_commit(&f.upstream, "someone-else", &[("c", "c")], &[], "elsewhere");
    f.workspaces.sync_mirror(KEY, &f.url, None, &needed).unwrap();
    assert_eq!(branch_head(&mirror, "someone-else"), None, "nothing the task needs changed");

    let newer = upstream_commit(&f.upstream, "main", &[("a.txt", "a")], &[], "more");
    f.workspaces.sync_mirror(KEY, &f.url, None, &needed).unwrap();
    assert_eq!(branch_head(&mirror, "main"), Some(newer), "the base moved");
    assert_eq!(branch_head(&mirror, "someone-else"), Some(other), "the fetch takes every branch");

    let pushed = upstream_commit(&f.upstream, "forgehand/issue-1", &[("b", "b")], &[], "earlier attempt");
    f.workspaces.sync_mirror(KEY, &f.url, None, &needed).unwrap();
    assert_eq!(branch_head(&mirror, "forgehand/issue-1"), Some(pushed), "the branch appeared");

    let upstream = Repository::open_bare(&f.upstream).unwrap();
    upstream.find_reference("refs/heads/forgehand/issue-1").unwrap().delete().unwrap();
    f.workspaces.sync_mirror(KEY, &f.url, None, &needed).unwrap();
    assert_eq!(branch_head(&mirror, "forgehand/issue-1"), None, "the branch went: pruned");
}

#[test]
fn sync_prunes_deleted_branches_and_follows_a_new_url() {
    let f = fixture();
    upstream_commit(&f.upstream, "gone", &[("g", "g")], &[], "g");
    let mirror = f.workspaces.sync_mirror(KEY, &f.url, None, &[]).unwrap();
    assert!(branch_head(&mirror, "gone").is_some());
    let upstream = Repository::open_bare(&f.upstream).unwrap();
    upstream.find_reference("refs/heads/gone").unwrap().delete().unwrap();

    // A plain path works as well, and the stored URL follows the one given.
    let path_url = f.upstream.to_str().unwrap();
    f.workspaces.sync_mirror(KEY, path_url, None, &[]).unwrap();
    assert_eq!(branch_head(&mirror, "gone"), None);
    assert_eq!(origin_url(&mirror), path_url);
}

#[test]
fn a_failed_first_sync_leaves_nothing_behind() {
    let f = fixture();
    let missing = format!("file://{}", f.tmp.path().join("nope.git").display());
    let err = f.workspaces.sync_mirror(KEY, &missing, None, &[]).unwrap_err();
    assert!(err.to_string().starts_with("fetching file://"), "{err}");
    let mirrors = fs::read_dir(f.workspaces.root.join("mirrors")).unwrap();
    assert_eq!(mirrors.count(), 0);
}

#[test]
fn leftovers_of_a_crashed_clone_are_replaced() {
    let f = fixture();
    let mirrors = f.workspaces.root.join("mirrors");
    let name = mirror_dir_name(KEY).unwrap();
    fs::create_dir_all(mirrors.join(&name)).unwrap();
    fs::create_dir_all(mirrors.join(format!("{name}.partial/objects"))).unwrap();

    let mirror = f.workspaces.sync_mirror(KEY, &f.url, None, &[]).unwrap();
    assert_eq!(branch_head(&mirror, "main"), branch_head(&f.upstream, "main"));
    assert_eq!(fs::read_dir(&mirrors).unwrap().count(), 1);
}

#[test]
fn urls_with_passwords_or_ssh_are_refused() {
    let f = fixture();
    let with_token = "https://x-access-token:ghp_SECRET@github.com/o/r.git";
    let err = f.workspaces.sync_mirror(KEY, with_token, None, &[]).unwrap_err();
    assert!(matches!(err, WorkspaceError::InvalidUrl { .. }));
    assert!(!format!("{err} {err:?}").contains("ghp_SECRET"));
    assert!(!err.is_transient());
    for url in ["git@github.com:o/r.git", "ssh://git@github.com/o/r.git", ""] {
        let err = f.workspaces.sync_mirror(KEY, url, None, &[]).unwrap_err();
        assert!(matches!(err, WorkspaceError::InvalidUrl { .. }), "{url}");
    }
    assert!(check_url("https://github.com/o/r.git").is_ok());
    assert!(check_url("https://user@github.com/o/r.git").is_ok());
    assert!(check_url("/srv/git/r.git").is_ok());
}

const BRANCH: &str = "forgehand/issue-1-fix-the-bug";

fn spec<'a>(f: &'a Fixture, task_id: i64, start: BranchStart) -> PrepareSpec<'a> {
    PrepareSpec { task_id, repo_key: KEY, clone_url: &f.url, creds: None, branch: BRANCH, start }
}

fn from_main() -> BranchStart {
    BranchStart::FromBase("main".into())
}

fn bot() -> Identity {
    Identity { name: "forgehand[bot]".into(), email: "bot@forgehand.invalid".into(), signing_key: None }
}

fn is_clean(repo: &Repository) -> bool {
    let mut options = git2::StatusOptions::new();
    options.include_ignored(false).include_untracked(true);
    repo.statuses(Some(&mut options)).unwrap().is_empty()
}

/// Loose objects and packs stored in the task repository itself.
fn own_objects(worktree: &Path) -> usize {
    let objects = worktree.join(".git/objects");
    let mut count = 0;
    for entry in fs::read_dir(&objects).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "info" {
            count += fs::read_dir(entry.path()).unwrap().count();
        }
    }
    count
}

#[test]
fn prepare_from_base_starts_a_branch_at_the_head_of_main() {
    let f = fixture();
    let main = upstream_commit(&f.upstream, "main", &[("a.txt", "a")], &[], "more");
    let worktree = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();

    assert_eq!(worktree.path, f.workspaces.root.join("tasks/task-1"));
    assert_eq!((worktree.branch.as_str(), worktree.base), (BRANCH, main));
    let repo = Repository::open(&worktree.path).unwrap();
    assert!(!repo.is_bare());
    assert_eq!(repo.head().unwrap().name().ok(), Some("refs/heads/forgehand/issue-1-fix-the-bug"));
    assert_eq!(repo.head().unwrap().target(), Some(main));
    assert_eq!(origin_url(&worktree.path), f.url);
    let readme = fs::read_to_string(worktree.path.join("README.md")).unwrap();
    assert_eq!(readme, "hello\n");
    assert!(is_clean(&repo));
    assert_eq!(own_objects(&worktree.path), 0, "the object database was copied");
}

#[test]
fn plain_git_works_in_the_checkout() {
    let f = fixture();
    let worktree = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(&worktree.path).output();
        out.map(|o| (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned()))
    };
    let Ok((ok, log)) = git(&["log", "--format=%s", "origin/main"]) else {
        return; // no git binary here; libgit2 reads the alternates in the other tests
    };
    assert!(ok && log.trim() == "initial commit", "{log}");
    assert!(git(&["fsck", "--connectivity-only"]).unwrap().0);
}

#[test]
fn commit_all_commits_new_modified_and_deleted_files_as_the_identity() {
    let f = fixture();
    let worktree = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();
    let dir = &worktree.path;
    fs::write(dir.join("README.md"), "hello, world\n").unwrap();
    fs::remove_file(dir.join("src/lib.rs")).unwrap();
    fs::create_dir_all(dir.join("docs")).unwrap();
    fs::write(dir.join("docs/new.md"), "new\n").unwrap();
    fs::write(dir.join(".gitignore"), "target/\n").unwrap();
    fs::create_dir_all(dir.join("target")).unwrap();
    fs::write(dir.join("target/junk"), "ignored").unwrap();

    let oid = worktree.commit_all("Fix the bug", &bot()).unwrap().unwrap();

    let repo = Repository::open(dir).unwrap();
    let commit = repo.find_commit(oid).unwrap();
    assert_eq!(commit.message().ok(), Some("Fix the bug"));
    assert_eq!(commit.parent_ids().collect::<Vec<_>>(), [worktree.base]);
    for person in [commit.author(), commit.committer()] {
        assert_eq!(
            (person.name().ok(), person.email().ok()),
            (Some("forgehand[bot]"), Some("bot@forgehand.invalid"))
        );
    }
    let tree = commit.tree().unwrap();
    assert!(tree.get_path(Path::new("target/junk")).is_err(), "ignored file committed");
    assert!(is_clean(&repo));
    assert!(worktree.has_new_commits().unwrap());
    let summary = worktree.summary().unwrap();
    assert_eq!(summary.commits, 1);
    assert_eq!(summary.files, [".gitignore", "README.md", "docs/new.md", "src/lib.rs"]);
}

#[test]
fn a_clean_tree_commits_nothing() {
    let f = fixture();
    let worktree = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();
    assert_eq!(worktree.commit_all("nothing", &bot()).unwrap(), None);
    assert!(!worktree.has_new_commits().unwrap());
    let summary = worktree.summary().unwrap();
    assert_eq!((summary.commits, summary.files.len()), (0, 0));
}

#[test]
fn commits_the_agent_made_are_kept() {
    let f = fixture();
    let worktree = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();
    worktree.set_identity(&bot()).unwrap();
    let repo = Repository::open(&worktree.path).unwrap();
    assert_eq!(repo.config().unwrap().get_string("user.name").unwrap(), "forgehand[bot]");
    fs::write(worktree.path.join("agent.txt"), "by the agent").unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(Path::new("agent.txt")).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let head = repo.head().unwrap().peel_to_commit().unwrap();
    let agent = Signature::now("Claude", "claude@example.com").unwrap();
    let own = repo.commit(Some("HEAD"), &agent, &agent, "agent", &tree, &[&head]).unwrap();

    assert_eq!(worktree.commit_all("leftovers", &bot()).unwrap(), None);
    assert!(worktree.has_new_commits().unwrap());
    fs::write(worktree.path.join("left.txt"), "not committed").unwrap();
    let leftovers = worktree.commit_all("leftovers", &bot()).unwrap().unwrap();
    let parent = repo.find_commit(leftovers).unwrap().parent_id(0).unwrap();
    assert_eq!(parent, own);
    assert_eq!(worktree.summary().unwrap().commits, 2);
}

#[test]
fn preparing_a_task_again_starts_fresh() {
    let f = fixture();
    let first = f.workspaces.prepare(&spec(&f, 3, from_main())).unwrap();
    fs::write(first.path.join("stray.txt"), "from a crashed run").unwrap();
    first.commit_all("half done", &bot()).unwrap();

    let read_only = first.path.join("vendor/pkg");
    fs::create_dir_all(&read_only).unwrap();
    fs::write(read_only.join("mod.go"), "package pkg").unwrap();
    for dir in [&read_only, &first.path.join("vendor")] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
    }

    let second = f.workspaces.prepare(&spec(&f, 3, from_main())).unwrap();
    assert_eq!(second.path, first.path);
    assert!(!second.path.join("stray.txt").exists());
    assert!(!second.path.join("vendor").exists());
    assert!(!second.has_new_commits().unwrap());
}

/// Task 1 as an agent might leave it after the daemon committed its work: files
/// changed, added and ignored, a hook and a config entry planted in `.git`.
fn finished_task_with_leftovers(f: &Fixture) -> Worktree {
    let first = f.workspaces.prepare(&spec(f, 1, from_main())).unwrap();
    fs::write(first.path.join("README.md"), "changed by task 1\n").unwrap();
    fs::write(first.path.join("new.txt"), "added by task 1\n").unwrap();
    fs::write(first.path.join(".gitignore"), "build/\n").unwrap();
    fs::create_dir_all(first.path.join("build")).unwrap();
    fs::write(first.path.join("build/out.bin"), "ignored output").unwrap();
    let hook = first.path.join(".git/hooks/pre-commit");
    fs::create_dir_all(hook.parent().unwrap()).unwrap();
    fs::write(&hook, "#!/bin/sh\necho planted\n").unwrap();
    let mut config = Repository::open(&first.path).unwrap().config().unwrap();
    config.set_str("core.fsmonitor", "/tmp/planted-command").unwrap();
    // A repository of its own inside the checkout, with a hook of its own.
    let nested = first.path.join("vendor/nested");
    Repository::init(&nested).unwrap();
    fs::write(nested.join(".git/hooks/pre-commit"), "#!/bin/sh\necho planted\n").unwrap();
    first.commit_all("task 1", &bot()).unwrap().unwrap();
    first
}

#[test]
fn the_next_task_reuses_a_recycled_checkout_and_keeps_nothing_of_the_last() {
    let f = fixture();
    let first = finished_task_with_leftovers(&f);
    let untouched = fs::metadata(first.path.join("src/lib.rs")).unwrap().ino();
    f.workspaces.recycle_task(1, KEY, 1).unwrap();
    assert!(!first.path.exists());

    let second = f.workspaces.prepare(&spec(&f, 2, from_main())).unwrap();
    // The same file, not a new one: only what differs from main was written.
    assert_eq!(fs::metadata(second.path.join("src/lib.rs")).unwrap().ino(), untouched);
    assert_eq!(fs::read_to_string(second.path.join("README.md")).unwrap(), "hello\n");
    for gone in ["new.txt", ".gitignore", "build", ".git/hooks/pre-commit", ".forgehand-index", "vendor"] {
        assert!(!second.path.join(gone).exists(), "{gone} survived");
    }
    let repo = Repository::open(&second.path).unwrap();
    assert!(repo.config().unwrap().get_string("core.fsmonitor").is_err());
    assert!(is_clean(&repo));
    assert_eq!(head_id(&repo, f.workspaces.scrub()).unwrap(), second.base);
    assert_eq!(repo.branches(None).unwrap().count(), 2, "the task's branch and origin/main");
    // It works like a new checkout: commit and push reach the remote.
    fs::write(second.path.join("fix.txt"), "fixed\n").unwrap();
    second.commit_all("fix", &bot()).unwrap().unwrap();
    second.push(None, false).unwrap();
    assert_eq!(upstream_file(&f, BRANCH, "fix.txt").as_deref(), Some("fixed\n"));
    assert_eq!(upstream_file(&f, BRANCH, "new.txt"), None);
}

/// Whether the git on PATH checks out (it does when present) and writes the index without
/// its hash (`index.skipHash`, git 2.40 and later).
fn git_writes_indexes_without_hash() -> bool {
    let Some(git) = super::cli::git_program() else { return false };
    let Ok(out) = std::process::Command::new(git).arg("--version").output() else { return false };
    let said = String::from_utf8_lossy(&out.stdout);
    let mut version = said.trim().trim_start_matches("git version ").split('.').map(|n| n.parse::<u32>());
    matches!((version.next(), version.next()), (Some(Ok(major)), Some(Ok(minor))) if (major, minor) >= (2, 40))
}

#[test]
fn libgit2_commits_in_the_index_git_wrote_without_its_hash() {
    let f = fixture();
    finished_task_with_leftovers(&f);
    f.workspaces.recycle_task(1, KEY, 1).unwrap();
    let second = f.workspaces.prepare(&spec(&f, 2, from_main())).unwrap();
    let index = fs::read(second.path.join(".git/index")).unwrap();
    let trailer = &index[index.len() - 20..];
    assert_eq!(trailer == [0; 20], git_writes_indexes_without_hash(), "the index ends with {trailer:?}");

    fs::write(second.path.join("src/lib.rs"), "pub fn answer() -> u32 { 44 }\n").unwrap();
    let commit = second.commit_all("44", &bot()).unwrap().expect("a commit");
    let repo = Repository::open(&second.path).unwrap();
    assert!(is_clean(&repo), "libgit2 read the index: nothing but the change was committed");
    assert_eq!(repo.find_commit(commit).unwrap().tree().unwrap().len(), 2, "README.md and src");
    second.push(None, false).unwrap();
    assert_eq!(upstream_file(&f, BRANCH, "src/lib.rs").as_deref(), Some("pub fn answer() -> u32 { 44 }\n"));
}

#[test]
fn recycling_keeps_at_most_the_given_number_of_checkouts() {
    let f = fixture();
    for id in 1..=3 {
        f.workspaces.prepare(&spec(&f, id, from_main())).unwrap();
    }
    for id in 1..=3 {
        f.workspaces.recycle_task(id, KEY, 2).unwrap();
    }
    let shelf = f.workspaces.root.join("spares").join(mirror_dir_name(KEY).unwrap());
    assert_eq!(fs::read_dir(&shelf).unwrap().count(), 2);
    assert_eq!(fs::read_dir(f.workspaces.root.join("tasks")).unwrap().count(), 0);
    // Recycling a task without a directory is a no-op.
    f.workspaces.recycle_task(9, KEY, 2).unwrap();
    f.workspaces.prepare(&spec(&f, 4, from_main())).unwrap();
    assert_eq!(fs::read_dir(&shelf).unwrap().count(), 1);
}

#[test]
fn a_recycled_checkout_the_agent_broke_is_replaced_by_a_new_one() {
    let f = fixture();
    let first = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();
    first.commit_all("nothing", &bot()).unwrap();
    f.workspaces.recycle_task(1, KEY, 1).unwrap();
    let spare = f.workspaces.root.join("spares").join(mirror_dir_name(KEY).unwrap()).join("task-1");
    fs::write(spare.join(".git/index"), "not an index").unwrap();
    // A second name keeps the old file's inode from being reused by a new file.
    let old_readme = f.tmp.path().join("old-readme");
    fs::hard_link(spare.join("README.md"), &old_readme).unwrap();
    upstream_commit(&f.upstream, "main", &[("src/lib.rs", "pub fn answer() -> u32 { 43 }\n")], &[], "43");

    let second = f.workspaces.prepare(&spec(&f, 2, from_main())).unwrap();
    let lib = fs::read_to_string(second.path.join("src/lib.rs")).unwrap();
    assert!(lib.contains("43"), "{lib}");
    let ino = |path: &Path| fs::metadata(path).unwrap().ino();
    assert_ne!(ino(&second.path.join("README.md")), ino(&old_readme), "a new checkout");
    assert!(is_clean(&Repository::open(&second.path).unwrap()));
}

#[test]
fn a_missing_branch_is_a_permanent_error() {
    let f = fixture();
    for start in [BranchStart::Existing, BranchStart::FromBase("develop".into())] {
        let err = f.workspaces.prepare(&spec(&f, 1, start)).unwrap_err();
        assert!(matches!(err, WorkspaceError::MissingBranch(_)), "{err:?}");
        assert!(!err.is_transient());
    }
    let mut bad = spec(&f, 1, from_main());
    bad.branch = "../evil.lock";
    let err = f.workspaces.prepare(&bad).unwrap_err();
    assert!(matches!(err, WorkspaceError::InvalidBranch(_)), "{err:?}");
}

#[test]
fn remove_and_prune_task_directories() {
    let f = fixture();
    assert_eq!(f.workspaces.prune_tasks(2, &[]).unwrap(), 0);
    let now = std::time::SystemTime::now();
    for id in 1..=4 {
        let worktree = f.workspaces.prepare(&spec(&f, id, from_main())).unwrap();
        let age = std::time::Duration::from_secs(60 * (10 - id as u64));
        let dir = fs::File::open(&worktree.path).unwrap();
        dir.set_modified(now - age).unwrap();
    }
    f.workspaces.remove_task(2).unwrap();
    f.workspaces.remove_task(2).unwrap();
    assert_eq!(f.workspaces.prune_tasks(2, &[]).unwrap(), 1);

    let tasks = f.workspaces.root.join("tasks");
    let mut left: Vec<_> =
        fs::read_dir(&tasks).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["task-3", "task-4"]);
    assert_eq!(f.workspaces.prune_tasks(0, &[3]).unwrap(), 1, "a task waiting to resume keeps its checkout");
    let reopened = f.workspaces.reopen(3, BRANCH, "main");
    assert!(reopened.is_some_and(|w| w.path == tasks.join("task-3")), "the kept checkout reopens");
    assert!(f.workspaces.reopen(3, "another-branch", "main").is_none());
    assert!(f.workspaces.reopen(4, BRANCH, "main").is_none());
    assert_eq!(f.workspaces.prune_tasks(0, &[]).unwrap(), 1);
    // The mirror survives: the next task only fetches.
    assert!(f.workspaces.prepare(&spec(&f, 5, from_main())).is_ok());
}

fn upstream_file(f: &Fixture, branch: &str, path: &str) -> Option<String> {
    let repo = Repository::open_bare(&f.upstream).unwrap();
    let reference = repo.find_reference(&format!("refs/heads/{branch}")).ok()?;
    let tree = reference.peel_to_tree().unwrap();
    let entry = tree.get_path(Path::new(path)).ok()?;
    let blob = entry.to_object(&repo).unwrap().peel_to_blob().unwrap();
    Some(String::from_utf8(blob.content().to_vec()).unwrap())
}

/// Prepares task `id` on `BRANCH`, writes `files`, commits and returns the commit.
fn task_with_change(f: &Fixture, id: i64, start: BranchStart, files: &[(&str, &str)]) -> (Worktree, Oid) {
    let worktree = f.workspaces.prepare(&spec(f, id, start)).unwrap();
    for (path, content) in files {
        fs::write(worktree.path.join(path), content).unwrap();
    }
    let oid = worktree.commit_all("change", &bot()).unwrap().unwrap();
    (worktree, oid)
}

#[test]
fn push_creates_the_branch_upstream() {
    let f = fixture();
    let (worktree, oid) = task_with_change(&f, 1, from_main(), &[("fix.txt", "fixed\n")]);
    fs::remove_file(worktree.path.join("src/lib.rs")).unwrap();
    let second = worktree.commit_all("delete", &bot()).unwrap().unwrap();
    worktree.push(None, false).unwrap();

    assert_eq!(branch_head(&f.upstream, BRANCH), Some(second));
    let repo = Repository::open_bare(&f.upstream).unwrap();
    assert_eq!(repo.find_commit(second).unwrap().parent_id(0).unwrap(), oid);
    assert_eq!(upstream_file(&f, BRANCH, "fix.txt").as_deref(), Some("fixed\n"));
    assert_eq!(upstream_file(&f, BRANCH, "README.md").as_deref(), Some("hello\n"));
    assert_eq!(upstream_file(&f, BRANCH, "src/lib.rs"), None);
    assert_eq!(branch_head(&f.upstream, "main"), Some(worktree.base));
}

#[test]
fn a_follow_up_checks_out_the_existing_branch_and_fast_forwards() {
    let f = fixture();
    let (first, oid) = task_with_change(&f, 1, from_main(), &[("fix.txt", "v1\n")]);
    first.push(None, false).unwrap();

    let (follow_up, newer) = task_with_change(&f, 2, BranchStart::Existing, &[("fix.txt", "v2\n")]);
    assert_eq!(follow_up.base, oid);
    let repo = Repository::open(&follow_up.path).unwrap();
    assert_eq!(repo.find_commit(newer).unwrap().parent_id(0).unwrap(), oid);
    follow_up.push(None, false).unwrap();

    assert_eq!(branch_head(&f.upstream, BRANCH), Some(newer));
    assert_eq!(upstream_file(&f, BRANCH, "fix.txt").as_deref(), Some("v2\n"));
    assert_eq!(follow_up.summary().unwrap().files, ["fix.txt"]);
}

#[test]
fn a_push_over_a_moved_branch_is_refused_unless_forced() {
    let f = fixture();
    let (first, _) = task_with_change(&f, 1, from_main(), &[("fix.txt", "v1\n")]);
    first.push(None, false).unwrap();
    let (follow_up, ours) = task_with_change(&f, 2, BranchStart::Existing, &[("fix.txt", "v2\n")]);
    let theirs = upstream_commit(&f.upstream, BRANCH, &[("human.txt", "h")], &[], "human");

    let err = follow_up.push(None, false).unwrap_err();
    assert!(matches!(err, WorkspaceError::PushRejected { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with(&format!("the remote refused the push of {BRANCH}: ")), "{text}");
    assert!(!err.is_transient());
    assert_eq!(branch_head(&f.upstream, BRANCH), Some(theirs));

    follow_up.push(None, true).unwrap();
    assert_eq!(branch_head(&f.upstream, BRANCH), Some(ours));
}

#[test]
fn an_update_the_remote_refuses_is_reported() {
    let f = fixture();
    let (worktree, _) = task_with_change(&f, 1, from_main(), &[("fix.txt", "v1\n")]);
    // A lock on the ref makes the (local) remote refuse the update with a status.
    let lock = f.upstream.join(format!("refs/heads/{BRANCH}.lock"));
    fs::create_dir_all(lock.parent().unwrap()).unwrap();
    fs::write(&lock, "").unwrap();

    let err = worktree.push(None, false).unwrap_err();
    assert!(matches!(err, WorkspaceError::PushRejected { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(branch_head(&f.upstream, BRANCH), None);
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(path);
        }
    }
    found
}

#[test]
fn credentials_never_reach_a_config_file() {
    let f = fixture();
    let creds = creds("ghp_NEVER_ON_DISK");
    let mut spec = spec(&f, 1, from_main());
    spec.creds = Some(&creds);
    let worktree = f.workspaces.prepare(&spec).unwrap();
    fs::write(worktree.path.join("fix.txt"), "fixed").unwrap();
    worktree.commit_all("fix", &bot()).unwrap();
    worktree.push(Some(&creds), false).unwrap();

    let mirror = f.workspaces.sync_mirror(KEY, &f.url, Some(&creds), &[]).unwrap();
    assert_eq!(origin_url(&mirror), f.url);
    assert_eq!(origin_url(&worktree.path), f.url);
    assert!(fs::read_to_string(mirror.join("config")).unwrap().contains(&f.url));
    let leaks = files_containing(f.tmp.path(), "ghp_NEVER_ON_DISK");
    assert!(leaks.is_empty(), "{leaks:?}");
}

/// A forge on 127.0.0.1 that answers every request with 401, recording the requests.
struct RefusingForge {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn refusing_forge() -> RefusingForge {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/octo-org/hello-world.git", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    // Exits with the test process; each request is answered whole, so none hangs.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut request = String::new();
            let mut reader = BufReader::new(&stream);
            while reader.read_line(&mut request).unwrap_or(0) > 2 {}
            seen.lock().unwrap().push(request);
            let response = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"forge\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            let _ = stream.write_all(response.as_bytes());
        }
    });
    RefusingForge { url, requests }
}

use super::cli::base64;

#[test]
fn a_refused_token_is_a_permanent_error_and_goes_only_through_the_callback() {
    let f = fixture();
    let forge = refusing_forge();
    let creds = creds("ghp_REFUSED");

    let err = f.workspaces.sync_mirror(KEY, &forge.url, Some(&creds), &[]).unwrap_err();

    assert!(!err.is_transient(), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(text.contains(&format!("fetching {}", forge.url)), "{text}");
    assert!(!text.contains("ghp_REFUSED"), "{text}");
    let root = std::path::absolute(&f.workspaces.root).unwrap();
    assert!(!text.contains(root.to_str().unwrap()), "{text}");
    let requests = forge.requests.lock().unwrap();
    let expected = format!("Authorization: Basic {}", base64(b"x-access-token:ghp_REFUSED"));
    assert!(requests.iter().any(|r| r.contains(&expected)), "{requests:?}");
    assert!(requests.iter().all(|r| !r.contains("ghp_REFUSED")));
    assert!(files_containing(f.tmp.path(), "ghp_REFUSED").is_empty());
    assert_eq!(fs::read_dir(f.workspaces.root.join("mirrors")).unwrap().count(), 0);
}

#[test]
fn a_forge_asking_for_credentials_without_any_is_a_permanent_error() {
    let f = fixture();
    let forge = refusing_forge();
    let err = f.workspaces.sync_mirror(KEY, &forge.url, None, &[]).unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
}

#[test]
fn what_commands_left_stays_out_of_the_commit_unless_the_agent_changed_it() {
    let f = fixture();
    let worktree = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();
    let dir = &worktree.path;
    let before = worktree.snapshot().unwrap();
    assert!(before.is_empty(), "{before:?}");
    // Setup: a dependency folder, a generated file, a rewritten tracked file.
    fs::create_dir_all(dir.join("deps/pkg")).unwrap();
    fs::write(dir.join("deps/pkg/index.js"), "dep").unwrap();
    fs::write(dir.join("generated.rs"), "gen").unwrap();
    fs::write(dir.join("README.md"), "rewritten by setup\n").unwrap();
    fs::write(dir.join("lock.txt"), "v1").unwrap();
    let mut leftovers = crate::executor::workspace::Leftovers::default();
    leftovers.record(&before, &worktree.snapshot().unwrap());
    assert_eq!(leftovers.paths().collect::<Vec<_>>(), ["README.md", "deps/", "generated.rs", "lock.txt"]);
    // The agent: a new file, and a change to one of setup's files.
    fs::write(dir.join("feature.rs"), "by the agent").unwrap();
    fs::write(dir.join("lock.txt"), "v2 by the agent").unwrap();

    let oid = worktree.commit_all_except("agent", &bot(), &leftovers).unwrap().unwrap();

    let repo = Repository::open(dir).unwrap();
    let tree = repo.find_commit(oid).unwrap().tree().unwrap();
    let has = |path: &str| tree.get_path(Path::new(path)).is_ok();
    assert!(has("feature.rs") && has("lock.txt"), "the agent's changes are committed");
    assert!(!has("deps/pkg/index.js") && !has("generated.rs"), "setup's files stayed out");
    let readme = repo.find_blob(tree.get_path(Path::new("README.md")).unwrap().id()).unwrap();
    assert_eq!(readme.content(), b"hello\n", "setup's rewrite stayed out");
    assert_eq!(fs::read_to_string(dir.join("README.md")).unwrap(), "rewritten by setup\n");
}

#[test]
fn local_commits_list_what_the_api_must_make_again() {
    let f = fixture();
    let worktree = f.workspaces.prepare(&spec(&f, 1, from_main())).unwrap();
    let dir = &worktree.path;
    // A file that becomes a link, one deleted, one renamed (its blob known to the remote).
    fs::remove_file(dir.join("README.md")).unwrap();
    std::os::unix::fs::symlink("src/lib.rs", dir.join("README.md")).unwrap();
    fs::rename(dir.join("src/lib.rs"), dir.join("lib.rs")).unwrap();
    let first = worktree.commit_all("one", &bot()).unwrap().unwrap();
    fs::write(dir.join("new.txt"), "new\n").unwrap();
    let second = worktree.commit_all("two", &bot()).unwrap().unwrap();

    let commits = worktree.local_commits().unwrap();
    assert_eq!(commits.iter().map(|c| c.id).collect::<Vec<_>>(), [first, second], "oldest first");
    assert_eq!(commits[0].message, "one");
    let repo = Repository::open(dir).unwrap();
    assert_eq!(commits[1].parent_tree, repo.find_commit(first).unwrap().tree_id());
    let change = |i: usize, path: &str| commits[i].changes.iter().find(|c| c.path == path).cloned().unwrap();
    let link = change(0, "README.md");
    assert_eq!((link.mode.as_str(), link.known), ("120000", false), "one entry for a typechange");
    let deleted = change(0, "src/lib.rs");
    assert_eq!((deleted.mode.as_str(), deleted.object), ("100644", None));
    let moved = change(0, "lib.rs");
    assert!(moved.known, "the parent had that blob at a changed path: no upload");
    assert_eq!(commits[0].changes.len(), 3);
    assert_eq!(commits[1].changes.len(), 1);
    assert!(!change(1, "new.txt").known);
}
