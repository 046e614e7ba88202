//! Retention (`[storage]`): old rows go in bounded batches and recent ones stay, an
//! active task keeps its deliveries and detail, two instances share a cleanup without
//! failing or counting twice, unused mirrors and spare checkouts beyond their budget are
//! deleted (never a mirror in use), `forgehand cleanup --dry-run` deletes nothing, and
//! the setup page shows what `data_dir` holds. Time is driven by the timestamps in the
//! data and by file modification times, never by waiting.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use forgehand::config::Settings;
use forgehand::db::entities::{deliveries, refused_deliveries, task_events, task_steps, tasks};
use forgehand::db::{Db, queries};
use forgehand::executor::cleanup::{self, Report};
use forgehand::executor::workspace::Workspaces;
use forgehand::trigger::{TaskKind, TaskRequest, TriggerKind};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;

use crate::dashboard::Browser;
use crate::executor::{Setup, World};
use crate::fake_forge::Dialect;
use crate::harness::*;

const BINARY: &str = env!("CARGO_BIN_EXE_forgehand");

fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::days(days)
}

fn settings_of(app: &TestApp) -> Settings {
    Settings::load_with_env(Some(&app.config_path()), Default::default()).unwrap()
}

/// A task for issue `number` in `status`, finished at `finished` when given.
async fn task(db: &Db, number: u32, status: &str, finished: Option<DateTime<Utc>>) -> i64 {
    let request = TaskRequest {
        kind: TaskKind::Implement,
        trigger: TriggerKind::Label,
        repo: "o/r".into(),
        clone_url: "file:///r.git".into(),
        number: number.into(),
        title: "t".into(),
        requested_by: "alice".into(),
        instructions: String::new(),
        branch: None,
        routing: Default::default(),
        feedback_ref: None,
    };
    let conn = db.connection_for_tests();
    let id = queries::insert_task(conn, "github", &request).await.unwrap().unwrap();
    tasks::Entity::update_many()
        .col_expr(tasks::Column::Status, Expr::value(status))
        .col_expr(tasks::Column::FinishedAt, Expr::value(finished))
        .filter(tasks::Column::Id.eq(id))
        .exec(conn)
        .await
        .unwrap();
    id
}

/// `n` deliveries received at `at`, pointing at `task_id`.
async fn deliveries_at(db: &Db, n: usize, at: DateTime<Utc>, task_id: Option<i64>) {
    let rows: Vec<_> = (0..n)
        .map(|_| deliveries::ActiveModel {
            id: NotSet,
            forge: Set("github".into()),
            delivery_id: Set(new_id()),
            event_key: Set(None),
            event: Set("issues".into()),
            action: Set(Some("labeled".into())),
            repo: Set(Some("o/r".into())),
            number: Set(Some(1)),
            sender: Set(Some("alice".into())),
            received_at: Set(at),
            outcome: Set("ignored".into()),
            reason: Set("test".into()),
            task_id: Set(task_id),
        })
        .collect();
    for chunk in rows.chunks(500) {
        deliveries::Entity::insert_many(chunk.to_vec()).exec(db.connection_for_tests()).await.unwrap();
    }
}

/// Three timeline rows, two steps and two transcript chunks for task `id`.
async fn detail(db: &Db, id: i64) {
    let conn = db.connection_for_tests();
    for i in 0..3 {
        let event = task_events::ActiveModel {
            id: NotSet,
            task_id: Set(id),
            at: Set(Utc::now()),
            status: Set("note".into()),
            message: Set(format!("event {i}")),
        };
        task_events::Entity::insert(event).exec(conn).await.unwrap();
    }
    for attempt in 1..=2 {
        let step = task_steps::ActiveModel {
            id: NotSet,
            task_id: Set(id),
            attempt: Set(attempt),
            phase: Set("agent".into()),
            round: Set(0),
            command: Set(None),
            passed: Set(true),
            outcome: Set("ok".into()),
            duration_ms: Set(10),
            output: Set(None),
            ended_at: Set(Utc::now()),
        };
        task_steps::Entity::insert(step).exec(conn).await.unwrap();
    }
    db.append_transcript(id, 0, b"{\"a\":1}\n".to_vec()).await.unwrap();
    db.append_transcript(id, 8, b"{\"b\":2}\n".to_vec()).await.unwrap();
}

async fn refusal(db: &Db, at: DateTime<Utc>) {
    let row = refused_deliveries::ActiveModel {
        id: NotSet,
        forge: Set("github".into()),
        status: Set(401),
        reason: Set("bad signature".into()),
        event: Set(None),
        delivery_id: Set(None),
        source: Set(None),
        received_at: Set(at),
    };
    refused_deliveries::Entity::insert(row).exec(db.connection_for_tests()).await.unwrap();
}

/// How many rows of the task's detail are stored: (events, steps, transcript bytes).
async fn detail_of(db: &Db, id: i64) -> (u64, u64, u64) {
    let conn = db.connection_for_tests();
    let events =
        task_events::Entity::find().filter(task_events::Column::TaskId.eq(id)).count(conn).await.unwrap();
    let steps =
        task_steps::Entity::find().filter(task_steps::Column::TaskId.eq(id)).count(conn).await.unwrap();
    (events, steps, db.transcript_end(id).await.unwrap())
}

async fn delivery_count(db: &Db) -> u64 {
    deliveries::Entity::find().count(db.connection_for_tests()).await.unwrap()
}

/// Old finished work, recent work and an active task, as the cleanup finds them.
struct Seeded {
    old_done: i64,
    recent_done: i64,
    active: i64,
}

async fn seed(db: &Db, old_deliveries: usize) -> Seeded {
    let old_done = task(db, 1, "done", Some(days_ago(100))).await;
    let recent_done = task(db, 2, "done", Some(days_ago(1))).await;
    // Queued long ago and still waiting (a held queue): nothing of it may go.
    let active = task(db, 3, "queued", None).await;
    for id in [old_done, recent_done, active] {
        detail(db, id).await;
    }
    deliveries_at(db, old_deliveries, days_ago(40), None).await;
    deliveries_at(db, 1, days_ago(40), Some(old_done)).await;
    deliveries_at(db, 1, days_ago(40), Some(active)).await;
    deliveries_at(db, 3, days_ago(1), Some(recent_done)).await;
    refusal(db, days_ago(40)).await;
    refusal(db, days_ago(1)).await;
    Seeded { old_done, recent_done, active }
}

#[tokio::test]
async fn old_rows_go_in_batches_recent_ones_and_an_active_tasks_stay() {
    let app = TestApp::spawn().await;
    let settings = settings_of(&app);
    // 2,500 old deliveries: three batches of at most 1,000 rows.
    let seeded = seed(&app.db, 2500).await;
    let before = delivery_count(&app.db).await;

    let dry = cleanup::run_once(&settings, &app.db, true).await;
    assert_eq!((dry.deliveries, dry.refusals), (2501, 1), "{dry}");
    assert_eq!(
        (dry.detail.tasks, dry.detail.events, dry.detail.steps, dry.detail.transcript_chunks),
        (1, 3, 2, 2)
    );
    assert_eq!(delivery_count(&app.db).await, before, "a dry run deletes nothing");
    assert_eq!(detail_of(&app.db, seeded.old_done).await, (3, 2, 16));

    let done = cleanup::run_once(&settings, &app.db, false).await;
    assert_eq!(Report { dry_run: true, ..done }, dry, "the run removes what the dry run counted");
    assert_eq!(delivery_count(&app.db).await, 4, "the active task's delivery and the recent ones stay");
    let kept = deliveries::Entity::find().all(app.db.connection_for_tests()).await.unwrap();
    assert!(kept.iter().any(|d| d.task_id == Some(seeded.active)), "{kept:?}");
    assert_eq!(detail_of(&app.db, seeded.old_done).await, (0, 0, 0));
    assert_eq!(detail_of(&app.db, seeded.recent_done).await, (3, 2, 16));
    assert_eq!(detail_of(&app.db, seeded.active).await, (3, 2, 16));
    let (old, _) = app.db.task(seeded.old_done).await.unwrap().expect("the task row stays");
    assert_eq!(old.status, "done");
    assert!(old.detail_removed_at.is_some());
    let browser = Browser::login(&app).await;
    let (status, page) = browser.get(&format!("/tasks/{}", seeded.old_done)).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"detail-removed\""), "the page says why the timeline is empty: {page}");
    let (_, recent) = browser.get(&format!("/tasks/{}", seeded.recent_done)).await;
    assert!(!recent.contains("detail-removed"), "{recent}");
    let refused = refused_deliveries::Entity::find().count(app.db.connection_for_tests()).await.unwrap();
    assert_eq!(refused, 1);

    let again = cleanup::run_once(&settings, &app.db, false).await;
    assert_eq!(again, Report::default(), "a second run finds nothing: {again}");
}

#[tokio::test]
async fn two_instances_cleaning_at_once_neither_fail_nor_count_twice() {
    let app = TestApp::spawn().await;
    let settings = settings_of(&app);
    let db = &app.db;
    let mut old_tasks = Vec::new();
    for n in 0..30 {
        let id = task(db, 100 + n, "failed", Some(days_ago(120))).await;
        detail(db, id).await;
        old_tasks.push(id);
    }
    deliveries_at(db, 3000, days_ago(60), None).await;
    // A second instance: its own connections to the same database.
    let other = Db::connect(&settings).await.unwrap();
    let (a, b) =
        tokio::join!(cleanup::run_once(&settings, db, false), cleanup::run_once(&settings, &other, false));
    assert_eq!(a.deliveries + b.deliveries, 3000, "{a} / {b}");
    assert_eq!(a.detail.tasks + b.detail.tasks, 30, "{a} / {b}");
    assert_eq!(a.detail.events + b.detail.events, 90, "{a} / {b}");
    assert_eq!(a.detail.steps + b.detail.steps, 60, "{a} / {b}");
    assert_eq!(a.detail.transcript_chunks + b.detail.transcript_chunks, 60, "{a} / {b}");
    assert_eq!(delivery_count(db).await, 0);
    for id in old_tasks {
        assert_eq!(detail_of(db, id).await, (0, 0, 0));
    }
}

/// Sets the modification time of `path` (a file or a directory).
fn set_mtime(path: &Path, at: SystemTime) {
    std::fs::File::open(path).unwrap().set_modified(at).unwrap();
}

fn long_ago(days: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(days * 86_400)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|e| e.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Makes a mirror look unused for `days`.
fn age_mirrors(workspaces: &Path, days: u64) {
    for name in entries(&workspaces.join("mirrors")) {
        let mirror = workspaces.join("mirrors").join(name);
        for file in ["forgehand-used", "FETCH_HEAD"] {
            if mirror.join(file).exists() {
                set_mtime(&mirror.join(file), long_ago(days));
            }
        }
    }
}

fn workspaces_dir(world: &World) -> PathBuf {
    settings_of(&world.app).data_dir.join("workspaces")
}

/// Labels another issue of the world's repository and waits for its task to end.
async fn run_issue(world: &World, n: u64) -> tasks::Model {
    world.forge.add_issue(world.repo, n, &format!("Issue {n}"), "Do it.", &["forgehand"], "alice");
    let body = edited("github/issues_labeled.json", "/issue/number", json!(n));
    let answer = world.app.deliver("github", Delivery::github("issues", body)).await;
    assert_eq!(answer.outcome(), "task_created", "{}", answer.text);
    world.finished(answer.json["task_id"].as_i64().unwrap()).await
}

#[tokio::test]
async fn an_unused_mirror_is_deleted_and_the_next_task_clones_it_again() {
    let world = World::start(Setup::new(Dialect::Github)).await;
    let settings = settings_of(&world.app);
    let workspaces = workspaces_dir(&world);
    let first = world.finished(world.deliver_label().await).await;
    assert_eq!(first.status, "done", "{first:?}");
    assert_eq!(entries(&workspaces.join("mirrors")).len(), 1);

    // Used yesterday: kept.
    age_mirrors(&workspaces, 1);
    assert_eq!(cleanup::run_once(&settings, &world.app.db, false).await.mirrors.count, 0);
    // Unused for longer than mirror_days (30): deleted, and its bytes counted.
    age_mirrors(&workspaces, 31);
    let report = cleanup::run_once(&settings, &world.app.db, false).await;
    assert_eq!(report.mirrors.count, 1, "{report}");
    assert!(report.mirrors.bytes > 0, "{report}");
    assert!(entries(&workspaces.join("mirrors")).is_empty());
    assert!(entries(&workspaces.join("trash")).is_empty(), "nothing left in the trash");

    let second = run_issue(&world, 43).await;
    assert_eq!(second.status, "done", "the next task clones again: {second:?}");
    assert_eq!(entries(&workspaces.join("mirrors")).len(), 1);
}

#[tokio::test]
async fn a_mirror_a_checkout_borrows_from_is_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote.git");
    crate::executor::bare_remote(&remote);
    let url = format!("file://{}", remote.display());
    let root = dir.path().join("workspaces");
    let workspaces = Workspaces::new(root.clone());
    let spec = forgehand::executor::workspace::PrepareSpec {
        task_id: 7,
        repo_key: "github/o/r",
        clone_url: &url,
        creds: None,
        branch: "forgehand/issue-7",
        start: forgehand::executor::workspace::BranchStart::FromBase("main".into()),
    };
    let worktree = workspaces.prepare(&spec).unwrap();
    age_mirrors(&root, 400);
    // The checkout of a running (or waiting, or failed) task borrows the mirror's objects.
    assert_eq!(workspaces.prune_mirrors(Duration::from_secs(86_400), false).unwrap().count, 0);
    assert_eq!(entries(&root.join("mirrors")).len(), 1);
    assert!(git2::Repository::open(&worktree.path).unwrap().head().unwrap().peel_to_commit().is_ok());
    // Once that checkout is gone, the mirror is unused.
    workspaces.remove_task(7).unwrap();
    assert_eq!(workspaces.prune_mirrors(Duration::from_secs(86_400), false).unwrap().count, 1);
    assert!(entries(&root.join("mirrors")).is_empty());
}

#[tokio::test]
async fn spare_checkouts_beyond_their_budget_go_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("workspaces");
    let workspaces = Workspaces::new(root.clone());
    // Three spares of about 1 MiB each, put aside 3, 2 and 1 days ago.
    let shelf = root.join("spares/github+o+r.git");
    for (id, age) in [(1, 3), (2, 2), (3, 1)] {
        let spare = shelf.join(format!("task-{id}"));
        std::fs::create_dir_all(&spare).unwrap();
        std::fs::write(spare.join("blob"), vec![id as u8; 1 << 20]).unwrap();
        set_mtime(&spare, long_ago(age));
    }
    let dry = workspaces.prune_spares(2 << 20, true).unwrap();
    assert_eq!(dry.count, 2, "{dry:?}");
    assert_eq!(entries(&shelf).len(), 3, "a dry run deletes nothing");
    // A budget of 2.5 MiB: the oldest goes, the two newer stay.
    let removed = workspaces.prune_spares((5 << 20) / 2, false).unwrap();
    assert_eq!(removed.count, 1, "{removed:?}");
    assert!(removed.bytes >= 1 << 20, "{removed:?}");
    assert_eq!(entries(&shelf), ["task-2", "task-3"]);
    assert_eq!(workspaces.prune_spares(u64::MAX, false).unwrap().count, 0);
}

#[tokio::test]
async fn the_cleanup_command_dry_run_deletes_nothing_and_says_what_it_would() {
    let app = TestApp::spawn().await;
    seed(&app.db, 5).await;
    let data_dir = settings_of(&app).data_dir;
    let transcript = data_dir.join("transcripts/task-999.jsonl");
    std::fs::create_dir_all(transcript.parent().unwrap()).unwrap();
    std::fs::write(&transcript, "{}\n").unwrap();
    set_mtime(&transcript, long_ago(100));
    let before = delivery_count(&app.db).await;

    let run = |dry: bool| {
        let mut command = tokio::process::Command::new(BINARY);
        command.arg("--config").arg(app.config_path()).arg("cleanup");
        if dry {
            command.arg("--dry-run");
        }
        command.output()
    };
    let output = run(true).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("would remove:"), "{stdout}");
    assert!(stdout.contains("  deliveries: 6\n"), "{stdout}");
    assert!(stdout.contains("  refused deliveries: 1\n"), "{stdout}");
    assert!(
        stdout.contains("finished tasks' detail: 1 tasks (timeline rows 3, steps 2, transcript chunks 2)"),
        "{stdout}"
    );
    assert!(stdout.contains("  transcript files: 1 ("), "{stdout}");
    assert_eq!(delivery_count(&app.db).await, before);
    assert!(transcript.exists());

    let output = run(false).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(stdout.contains("removed:") && stdout.contains("  deliveries: 6\n"), "{stdout}");
    assert_eq!(delivery_count(&app.db).await, before - 6);
    assert!(!transcript.exists());
}

#[tokio::test]
async fn the_setup_page_shows_what_data_dir_holds_by_kind() {
    let world = World::start(Setup::new(Dialect::Github)).await;
    let first = world.finished(world.deliver_label().await).await;
    assert_eq!(first.status, "done", "{first:?}");
    let browser = Browser::login(&world.app).await;
    let (status, page) = browser.get("/setup").await;
    assert_eq!(status, 200, "{page}");
    let row = |id: &str| {
        let start = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no {id} in {page}"));
        page[start..start + page[start..].find("</tr>").unwrap()].to_owned()
    };
    let database = row("storage-database");
    if on_postgres() {
        assert!(database.contains("PostgreSQL, external"), "{database}");
    } else {
        assert!(database.contains("SQLite file") && database.contains("<td>"), "{database}");
    }
    assert!(database.contains("iB"), "a size: {database}");
    // The finished task's mirror, its recycled checkout and its transcript.
    for id in ["storage-mirrors", "storage-spares", "storage-transcripts"] {
        let line = row(id);
        assert!(line.contains("<td>1</td>"), "{line}");
        assert!(line.contains("KiB") || line.contains("MiB"), "{line}");
    }
    assert!(row("storage-tasks").contains("<td>0</td>"), "{}", row("storage-tasks"));
}

#[tokio::test]
async fn the_daemon_cleans_up_on_its_own_and_counts_it_in_metrics() {
    let app = TestApp::spawn_with("[storage]\ncleanup_interval_secs = 1\n").await;
    let seeded = seed(&app.db, 5).await;
    let wanted = "forgehand_cleanup_removed_total{kind=\"deliveries\"} 6\n";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics =
            app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
        if metrics.contains(wanted) || tokio::time::Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(metrics.contains(wanted), "{metrics}");
    assert!(metrics.contains("forgehand_cleanup_removed_total{kind=\"task_events\"} 3\n"), "{metrics}");
    assert!(metrics.contains("forgehand_cleanup_removed_bytes_total{kind=\"mirrors\"} 0\n"), "{metrics}");
    assert!(!metrics.contains("forgehand_cleanup_runs_total 0\n"), "{metrics}");
    assert_eq!(detail_of(&app.db, seeded.old_done).await, (0, 0, 0));
    assert_eq!(delivery_count(&app.db).await, 4);
}
