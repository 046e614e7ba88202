use super::stream::DRAIN_AFTER_EXIT;
use super::*;

use serde_json::Value;

use std::future::Future;

use tempfile::TempDir;

const FAKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agent/fake-claude");
const PROMPT: &str = "Fix the README typo\nIt says 'teh'.";

/// A temporary working directory and transcript for one run of the stand-in.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spec(&self, mode: &str, extra_env: &[(&str, &str)]) -> AgentSpec {
        let mut extra = vec![("FAKE_CLAUDE_MODE".to_owned(), mode.to_owned())];
        extra.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        AgentSpec {
            kind: AgentKind::Claude,
            program: FAKE.to_owned(),
            args: claude::args(&Request { max_turns: 5, ..Request::new(PROMPT) }),
            stdin: None,
            cwd: self.path("work"),
            env: agent_env(AgentKind::Claude, std::env::vars(), &extra),
            timeout: Duration::from_secs(60),
            kill_grace: Duration::from_secs(2),
            transcript_path: self.path("logs/transcript.jsonl"),
            max_transcript_bytes: 1 << 20,
            writable: Vec::new(),
        }
    }

    fn pidfile(&self) -> String {
        self.path("sleep.pid").display().to_string()
    }

    fn background_pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.path("sleep.pid")).expect("the stand-in wrote no pid file");
        text.trim().parse().unwrap()
    }
}

fn never_cancelled() -> watch::Receiver<bool> {
    watch::channel(false).1
}

async fn run_mode(fixture: &Fixture, mode: &str) -> AgentRun {
    run(&fixture.spec(mode, &[]), never_cancelled(), None).await.unwrap()
}

/// Polls `check` until it holds or `within` has passed.
async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !check() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Gone or a zombie: orphans are reparented to a PID 1 that may never reap them.
fn process_gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return true;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'))
}

async fn with_deadline<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future).await.expect("the run did not end in time")
}

#[tokio::test]
async fn success_reports_session_turns_cost_and_text() {
    let fixture = Fixture::new();
    let run = run_mode(&fixture, "edit").await;
    assert_eq!(run.end, AgentEnd::Exited(0));
    let result = run.result.as_ref().unwrap();
    assert_eq!((result.num_turns, result.total_cost_usd), (Some(3), Some(0.0123)));
    assert_eq!(result.text, "Added FORGEHAND_DEMO.md");
    assert!(!run.session_id.as_deref().unwrap_or_default().is_empty());
    assert_eq!(outcome(&run), AgentOutcome::Success);
    let written = std::fs::read_to_string(fixture.path("work/FORGEHAND_DEMO.md")).unwrap();
    assert_eq!(written, "Fix the README typo\n");
}

#[tokio::test]
async fn transcript_holds_every_line() {
    let fixture = Fixture::new();
    let run = run_mode(&fixture, "edit").await;
    let transcript = std::fs::read_to_string(fixture.path("logs/transcript.jsonl")).unwrap();
    assert_eq!(transcript.len() as u64, run.transcript_bytes);
    assert_eq!(transcript.lines().count(), 7);
    assert!(transcript.lines().nth(5).unwrap().contains(r#""type": "result""#));
    let verdict: serde_json::Value = serde_json::from_str(transcript.lines().last().unwrap()).unwrap();
    assert_eq!(
        (verdict["type"].as_str(), verdict["success"].as_bool()),
        (Some(super::VERDICT_TYPE), Some(true))
    );
}

#[tokio::test]
async fn a_refused_run_ends_its_transcript_with_forgehands_verdict() {
    let fixture = Fixture::new();
    let run = run_mode(&fixture, "denied").await;
    let transcript = std::fs::read_to_string(fixture.path("logs/transcript.jsonl")).unwrap();
    let verdict: serde_json::Value = serde_json::from_str(transcript.lines().last().unwrap()).unwrap();
    assert_eq!(verdict["success"], false, "{transcript}");
    assert_eq!(verdict["reason"].as_str(), Some(outcome(&run).reason().as_str()));
}

#[tokio::test]
async fn transcript_stops_at_its_cap_while_parsing_goes_on() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("edit", &[]);
    spec.max_transcript_bytes = 700;
    let run = run(&spec, never_cancelled(), None).await.unwrap();
    let len = std::fs::metadata(&spec.transcript_path).unwrap().len();
    assert!(len <= 700 && len > 0, "transcript is {len} bytes");
    assert_eq!(len, run.transcript_bytes);
    assert_eq!(outcome(&run), AgentOutcome::Success);
}

#[tokio::test]
async fn events_arrive_live() {
    let fixture = Fixture::new();
    let (sender, mut receiver) = mpsc::unbounded_channel();
    run(&fixture.spec("edit", &[]), never_cancelled(), Some(sender)).await.unwrap();
    let mut events = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        events.push(event);
    }
    assert!(matches!(&events[0], AgentEvent::Init { model: Some(m), .. } if m == "claude-sonnet-4-5"));
    let tool = events.iter().find_map(|e| match e {
        AgentEvent::ToolUse { name, summary } => Some((name.clone(), summary.clone())),
        _ => None,
    });
    let (name, summary) = tool.unwrap();
    assert_eq!(name, "Write");
    assert!(summary.starts_with("Write /") && summary.ends_with("/work/FORGEHAND_DEMO.md"), "{summary}");
    assert!(events.contains(&AgentEvent::AssistantText("Done.".to_owned())));
    assert!(matches!(events.last(), Some(AgentEvent::Result(r)) if !r.is_error));
}

#[tokio::test]
async fn nothing_to_change_is_a_success_without_changes() {
    let fixture = Fixture::new();
    let run = run_mode(&fixture, "nothing").await;
    assert_eq!(outcome(&run), AgentOutcome::Success);
    assert_eq!(run.result.unwrap().text, "Nothing to change");
    assert_eq!(std::fs::read_dir(fixture.path("work")).unwrap().count(), 0);
}

#[tokio::test]
async fn reported_error_is_a_permanent_failure() {
    let fixture = Fixture::new();
    let run = run_mode(&fixture, "fail").await;
    assert_eq!(run.end, AgentEnd::Exited(1));
    assert!(run.stderr_tail.contains("simulated failure"));
    let verdict = outcome(&run);
    assert_eq!(verdict, AgentOutcome::Failed("the agent reported an error (aborted_streaming)".to_owned()));
    assert!(!verdict.is_transient());
    assert!(!verdict.reason().contains("simulated"), "stderr must not reach the reason");
}

#[tokio::test]
async fn crash_without_result_is_transient() {
    let fixture = Fixture::new();
    let run = run_mode(&fixture, "crash").await;
    assert!(run.session_id.is_some());
    let verdict = outcome(&run);
    assert_eq!(verdict, AgentOutcome::NoResult(AgentEnd::Exited(2)));
    assert!(verdict.is_transient());
    assert_eq!(verdict.reason(), "the agent stopped without a final result (exit code 2)");
}

#[tokio::test]
async fn max_turns_is_permanent() {
    let fixture = Fixture::new();
    let run = run_mode(&fixture, "max_turns").await;
    assert_eq!(run.end, AgentEnd::Exited(1));
    let verdict = outcome(&run);
    assert_eq!(verdict, AgentOutcome::MaxTurns { turns: Some(6) });
    assert!(!verdict.is_transient() && verdict.reason().contains("agent.max_turns"));
}

#[tokio::test]
async fn permission_denials_with_exit_zero_are_not_success() {
    let fixture = Fixture::new();
    let run = run_mode(&fixture, "denied").await;
    assert_eq!(run.end, AgentEnd::Exited(0));
    let tools = vec!["Write".to_owned(), "Bash".to_owned()];
    let verdict = outcome(&run);
    assert_eq!(verdict, AgentOutcome::PermissionDenied { count: 2, tools });
    assert_eq!(
        verdict.reason(),
        "the agent was refused permission 2 times (Write, Bash); allow the tools it needs in agent.allowed_tools"
    );
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("hang", &[("FAKE_CLAUDE_PIDFILE", &fixture.pidfile())]);
    spec.timeout = Duration::from_secs(3);
    spec.kill_grace = Duration::from_millis(500);
    let started = Instant::now();
    let run = with_deadline(run(&spec, never_cancelled(), None)).await.unwrap();
    assert!(started.elapsed() < spec.timeout + spec.kill_grace + Duration::from_secs(3));
    assert_eq!(run.end, AgentEnd::TimedOut);
    assert!(matches!(outcome(&run), AgentOutcome::TimedOut(_)));
    let pid = fixture.background_pid();
    assert!(eventually(Duration::from_secs(5), || process_gone(pid)).await, "sleep {pid} survived");
}

#[tokio::test]
async fn cancel_kills_the_whole_group() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("hang", &[("FAKE_CLAUDE_PIDFILE", &fixture.pidfile())]);
    spec.kill_grace = Duration::from_millis(300);
    let (cancel, cancelled) = watch::channel(false);
    let running = tokio::spawn(async move { run(&spec, cancelled, None).await });
    let pidfile = fixture.path("sleep.pid");
    assert!(eventually(Duration::from_secs(30), || pidfile.exists()).await);
    cancel.send(true).unwrap();
    let run = with_deadline(running).await.unwrap().unwrap();
    assert_eq!(run.end, AgentEnd::Cancelled);
    assert_eq!(outcome(&run), AgentOutcome::Cancelled);
    let pid = fixture.background_pid();
    assert!(eventually(Duration::from_secs(5), || process_gone(pid)).await, "sleep {pid} survived");
}

#[tokio::test]
async fn children_left_behind_are_killed_after_exit() {
    let fixture = Fixture::new();
    let spec = fixture.spec("orphan", &[("FAKE_CLAUDE_PIDFILE", &fixture.pidfile())]);
    let started = Instant::now();
    let run = with_deadline(run(&spec, never_cancelled(), None)).await.unwrap();
    assert!(started.elapsed() < DRAIN_AFTER_EXIT, "waited for the orphan's stdout");
    assert_eq!(outcome(&run), AgentOutcome::Success);
    let pid = fixture.background_pid();
    assert!(eventually(Duration::from_secs(5), || process_gone(pid)).await, "sleep {pid} survived");
}

#[tokio::test]
async fn flood_stays_bounded() {
    let fixture = Fixture::new();
    let spec = fixture.spec("flood", &[("FAKE_CLAUDE_FLOOD_MB", "20")]);
    let run = with_deadline(run(&spec, never_cancelled(), None)).await.unwrap();
    assert_eq!(run.result.as_ref().unwrap().text, "Flooded");
    assert!(run.transcript_bytes <= spec.max_transcript_bytes);
    assert!(std::fs::metadata(&spec.transcript_path).unwrap().len() <= spec.max_transcript_bytes);
    assert!(run.stderr_tail.len() <= STDERR_TAIL_BYTES && run.stderr_tail.ends_with("eee\n"));
    assert_eq!(outcome(&run), AgentOutcome::Success);
}

#[tokio::test]
async fn garbage_lines_are_tolerated() {
    let fixture = Fixture::new();
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let run = run(&fixture.spec("garbage", &[]), never_cancelled(), Some(sender)).await.unwrap();
    assert_eq!(outcome(&run), AgentOutcome::Success);
    assert_eq!(run.result.unwrap().text, "Survived the garbage");
    let mut unparsable = 0;
    while let Ok(event) = receiver.try_recv() {
        unparsable += usize::from(event == AgentEvent::Unparsable);
    }
    assert_eq!(unparsable, 5);
}

#[tokio::test]
async fn resume_and_environment_reach_the_agent() {
    let fixture = Fixture::new();
    let log = fixture.path("invocations.jsonl").display().to_string();
    let mut spec = fixture.spec("edit", &[]);
    let parent = std::env::vars().chain(
        [("GITHUB_TOKEN", "ghp_x"), ("FORGEHAND_FORGE__TOKEN", "x"), ("ANTHROPIC_API_KEY", "sk")]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let extra = [("FAKE_CLAUDE_LOG".to_owned(), log.clone())];
    spec.env = agent_env(AgentKind::Claude, parent, &extra);
    let request = Request {
        max_turns: 5,
        model: "claude-opus-4-1",
        resume: Some("session-42"),
        ..Request::new(PROMPT)
    };
    spec.args = claude::args(&request);
    let run = run(&spec, never_cancelled(), None).await.unwrap();
    assert_eq!(run.session_id.as_deref(), Some("session-42"));
    let written = std::fs::read_to_string(&log).unwrap();
    let entry: Value = serde_json::from_str(written.lines().next().unwrap()).unwrap();
    assert_eq!(entry["resume"], "session-42");
    let names = entry["env_names"].as_array().unwrap();
    assert!(names.contains(&Value::from("ANTHROPIC_API_KEY")));
    assert!(!names.contains(&Value::from("GITHUB_TOKEN")));
    assert!(!names.contains(&Value::from("FORGEHAND_FORGE__TOKEN")));
}

#[tokio::test]
async fn stand_in_refuses_a_missing_max_turns() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("edit", &[]);
    spec.args =
        vec!["-p".into(), "x".into(), "--output-format".into(), "stream-json".into(), "--verbose".into()];
    let run = run(&spec, never_cancelled(), None).await.unwrap();
    assert_eq!(run.end, AgentEnd::Exited(1));
    assert!(run.stderr_tail.contains("--max-turns"));
    assert_eq!(outcome(&run), AgentOutcome::NoResult(AgentEnd::Exited(1)));
}

#[tokio::test]
async fn stand_in_can_commit_its_change() {
    let fixture = Fixture::new();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(fixture.path("work")).output();
        String::from_utf8(out.unwrap().stdout).unwrap()
    };
    git(&["init", "-q"]);
    let run = run_mode(&fixture, "commit").await;
    assert_eq!(outcome(&run), AgentOutcome::Success);
    assert_eq!(git(&["log", "--format=%s"]).trim(), "Add FORGEHAND_DEMO.md");
}

#[tokio::test]
async fn missing_program_is_a_spawn_error_with_a_fix() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("edit", &[]);
    spec.program = "forgehand-no-such-agent".to_owned();
    let error = run(&spec, never_cancelled(), None).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot start the agent program `forgehand-no-such-agent`: not found on PATH; set agent.command"
    );
}
