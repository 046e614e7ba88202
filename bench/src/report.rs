//! The Markdown report: machine, date, commands, tables, goals.

use std::fmt::Write as _;
use std::path::Path;

use crate::executor::RepoFigures;
use crate::load::quantile;
use crate::procs::ThreadCpu;
use crate::{CONNECTIONS, Figures, Intake};

/// Notes written by people below this line survive a new `make bench`.
const MARKER: &str = "<!-- Notes below this line are kept when make bench rewrites this file. -->";

/// Summary of one (payload, connections, target) cell over its repeats.
struct Cell {
    rps_median: f64,
    rps_min: f64,
    rps_max: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
}

fn cell(figures: &Figures, payload: usize, connections: usize, target: &str) -> Option<Cell> {
    intake_cell(&figures.intake, payload, connections, target)
}

fn intake_cell(intake: &Intake, payload: usize, connections: usize, target: &str) -> Option<Cell> {
    let runs = intake.iter().find(|(k, _)| **k == (payload, connections, target)).map(|(_, v)| v)?;
    let mut rps: Vec<f64> = runs.iter().map(|r| r.rps()).collect();
    rps.sort_by(f64::total_cmp);
    let mut latencies: Vec<u32> = runs.iter().flat_map(|r| r.latencies_us.iter().copied()).collect();
    latencies.sort_unstable();
    Some(Cell {
        rps_median: quantile(&rps, 0.5),
        rps_min: rps[0],
        rps_max: rps[rps.len() - 1],
        p50_ms: f64::from(quantile(&latencies, 0.5)) / 1000.0,
        p99_ms: f64::from(quantile(&latencies, 0.99)) / 1000.0,
        failed: runs.iter().map(|r| r.failed).sum(),
    })
}

/// `--only intake`: each cell's median rate and p99, and forgehand's ratios to the durable
/// ceiling and to `before`.
pub fn intake_ratios(intake: &Intake, payloads: &[&str]) -> String {
    let mut out = String::from(
        "| payload | conns | forgehand req/s (p99 ms) | durable | before | forgehand / durable | forgehand / before |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    let show = |x: &Option<Cell>| {
        x.as_ref().map_or("—".to_owned(), |x| format!("{:.0} ({:.2})", x.rps_median, x.p99_ms))
    };
    for (p, name) in payloads.iter().enumerate() {
        for c in CONNECTIONS {
            let [fh, durable, before] =
                ["forgehand", "durable", "before"].map(|t| intake_cell(intake, p, c, t));
            let ratio = |other: &Option<Cell>| match (&fh, other) {
                (Some(a), Some(b)) => format!("{:.2}", a.rps_median / b.rps_median),
                _ => "—".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {name} | {c} | {} | {} | {} | {} | {} |",
                show(&fh),
                show(&durable),
                show(&before),
                ratio(&durable),
                ratio(&before)
            );
        }
    }
    out.push('\n');
    out.push_str(&cpu_per_delivery(intake, payloads));
    out
}

/// Where each server's CPU went per delivery, from its threads' times in /proc summed over
/// the runs: the database writer thread (one, serial: what a batch waits for) and the
/// others (HTTP, signature, parsing, answering).
pub fn cpu_per_delivery(intake: &Intake, payloads: &[&str]) -> String {
    let mut out = String::from(
        "CPU per delivery, µs (each server thread's time on a CPU, `/proc/…/task/*/schedstat`; the writer thread commits every batch):\n\n\
         | payload | conns | server | writer thread | other threads | all |\n|---|---:|---|---:|---:|---:|\n",
    );
    for (p, name) in payloads.iter().enumerate() {
        for c in CONNECTIONS {
            for server in ["forgehand", "durable", "before"] {
                let Some(runs) = intake.get(&(p, c, server)) else { continue };
                let summed = runs.iter().try_fold((ThreadCpu::default(), 0usize), |(mut cpu, sent), r| {
                    cpu.add(r.cpu?);
                    Some((cpu, sent + r.sent))
                });
                let Some((cpu, sent)) = summed.filter(|(_, sent)| *sent > 0) else { continue };
                let per = |ns: u64| ns as f64 / 1000.0 / sent as f64;
                let _ = writeln!(
                    out,
                    "| {name} | {c} | {server} | {:.1} | {:.1} | {:.1} |",
                    per(cpu.writer_ns),
                    per(cpu.other_ns),
                    per(cpu.writer_ns + cpu.other_ns)
                );
            }
        }
    }
    out
}

/// The whole report.
pub fn render(f: &Figures) -> String {
    let mut out = String::new();
    let a = &f.args;
    let _ = writeln!(out, "# Benchmarks\n");
    let _ =
        writeln!(out, "Written by `make bench` on {} (took {:.0} s).\n", f.started_at, f.took.as_secs_f64());
    let _ = writeln!(out, "## Machine\n\n```\n{}```\n", machine());
    let _ = writeln!(
        out,
        "## Commands\n\n```\nmake bench\n# which runs:\ncargo build --release --locked -p forgehand -p forgehand-bench"
    );
    let _ = writeln!(
        out,
        "forgehand-bench --forgehand {} --out {} --repeats {} --requests {} --run-secs {} --footprint-deliveries {} --footprint-secs {} --startup-tasks {} --scale-sizes {} --page-requests {} --executor-tasks {}{}\n```\n",
        a.forgehand.display(),
        a.out.display(),
        a.repeats,
        a.requests,
        a.run_secs,
        a.footprint_deliveries,
        a.footprint_secs,
        a.startup_tasks,
        a.scale_sizes.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
        a.page_requests,
        a.executor_tasks,
        a.compare.as_ref().map(|c| format!(" --compare {}", c.display())).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "Each run sends signed GitHub `issues`/`labeled` deliveries (unique delivery ids, distinct issue numbers, \
         half of them adding the trigger label) from this process over loopback keep-alive connections, and stops \
         after {} requests (3 KB) or {} (200 KB) or {} s. Requests/s is the median over {} runs (min–max beside it); \
         p50/p99 latency are over every request of those runs. The servers take turns within each repeat, \
         so they share the machine's noise: the machine is shared with other builds, absolute figures move \
         by ±50 % from one run to the next, and the ratios measured in the same run are what matter.\n",
        a.requests,
        (a.requests / 10).max(1),
        a.run_secs,
        a.repeats
    );
    let _ = writeln!(
        out,
        "- **forgehand**: the release binary, SQLite (WAL, synchronous=FULL) in a temp dir, executor disabled.\n\
         - **durable**: the durable ceiling, an axum server in forgehand-bench that verifies the HMAC, parses the JSON, \
         inserts one row per delivery into SQLite (WAL, synchronous=FULL) with group commit on one writer thread (128 \
         a batch, as forgehand) and answers 200 after the commit: the least a receiver that never loses a delivery does.\n\
         - **ceiling**: an axum server in forgehand-bench that reads the body, verifies the HMAC and answers 200.\n\
         - **webhook**: adnanh/webhook (Debian package) with a payload-hmac-sha256 rule on X-Hub-Signature-256 running `true`; it answers before its command runs, so after each of its runs the next one waits until the commands it forked have ended.{}{}\n",
        if f.targets.contains(&"before") {
            "\n- **before**: the `--compare` binary (another build of forgehand), same settings, same runs."
        } else {
            ""
        },
        if f.webhook_missing {
            " **Not installed on this machine: not measured** (`apt-get install webhook`)."
        } else {
            ""
        }
    );
    intake_table(&mut out, f);
    fixed_rate_table(&mut out, f);
    footprint_table(&mut out, f);
    scale_tables(&mut out, f);
    executor_table(&mut out, f);
    let _ = writeln!(out, "{MARKER}");
    out
}

fn intake_table(out: &mut String, f: &Figures) {
    let _ = writeln!(out, "## Intake\n");
    let _ =
        writeln!(out, "| payload | conns | server | req/s (median) | min–max | p50 ms | p99 ms | failed |");
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|");
    for (p, name) in f.payload_names.iter().enumerate() {
        for c in CONNECTIONS {
            for t in &f.targets {
                let Some(x) = cell(f, p, c, t) else { continue };
                let _ = writeln!(
                    out,
                    "| {name} | {c} | {t} | {:.0} | {:.0}–{:.0} | {:.2} | {:.2} | {} |",
                    x.rps_median, x.rps_min, x.rps_max, x.p50_ms, x.p99_ms, x.failed
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\nRatios (same run; goals: ≥ 0.80 of the durable ceiling with a p99 no worse, ≥ 3× webhook with a lower p99):\n"
    );
    let compared = f.targets.contains(&"before");
    let _ = writeln!(
        out,
        "| payload | conns | forgehand / durable | p99 forgehand vs durable | forgehand / ceiling | forgehand / webhook | p99 forgehand vs webhook |{}",
        if compared { " forgehand / before |" } else { "" }
    );
    let _ = writeln!(out, "|---|---:|---:|---|---:|---:|---|{}", if compared { "---:|" } else { "" });
    for (p, name) in f.payload_names.iter().enumerate() {
        for c in CONNECTIONS {
            let (Some(fh), Some(ceil)) = (cell(f, p, c, "forgehand"), cell(f, p, c, "ceiling")) else {
                continue;
            };
            let (vs_webhook, p99) = match cell(f, p, c, "webhook") {
                Some(w) => (
                    format!("{:.2}×", fh.rps_median / w.rps_median),
                    format!("{:.2} vs {:.2} ms", fh.p99_ms, w.p99_ms),
                ),
                None => ("not measured".into(), "not measured".into()),
            };
            let (vs_durable, p99_durable) = match cell(f, p, c, "durable") {
                Some(d) => (
                    format!("{:.2}", fh.rps_median / d.rps_median),
                    format!("{:.2} vs {:.2} ms", fh.p99_ms, d.p99_ms),
                ),
                None => ("not measured".into(), "not measured".into()),
            };
            let vs_before = match cell(f, p, c, "before") {
                Some(b) => format!(" {:.2}× |", fh.rps_median / b.rps_median),
                None if compared => " |".into(),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "| {name} | {c} | {vs_durable} | {p99_durable} | {:.2} | {vs_webhook} | {p99} |{vs_before}",
                fh.rps_median / ceil.rps_median
            );
        }
    }
    let (rows, tasks) = f.recorded;
    let (ok, accepted) = f.answered;
    let verdict =
        if rows == ok as i64 && tasks == accepted as i64 { "every one is recorded" } else { "**MISMATCH**" };
    let _ = writeln!(
        out,
        "\nDurability: forgehand answered {ok} deliveries 2xx ({accepted} of them 202, a task queued); after SIGKILL its \
         database holds {rows} deliveries and {tasks} tasks: {verdict}.\n"
    );
    out.push_str(&cpu_per_delivery(&f.intake, &f.payload_names));
}

fn footprint_table(out: &mut String, f: &Figures) {
    let mut startup = f.startup_ms.clone();
    startup.sort_by(f64::total_cmp);
    let _ = writeln!(out, "## Footprint\n");
    let _ = writeln!(out, "| figure | value | goal |");
    let _ = writeln!(out, "|---|---:|---|");
    let _ = writeln!(
        out,
        "| idle RSS after start (of which anonymous: heap and stacks; the rest is pages of the binary and \
         libraries mapped from files) | {:.1} MB ({:.1} MB) | ≤ 15 MB |",
        f.idle_rss_kib as f64 / 1024.0,
        f.idle_rss_anon_kib as f64 / 1024.0
    );
    if let (Some(first), Some(last)) = (f.rss_samples.first(), f.rss_samples.last()) {
        let _ = writeln!(
            out,
            "| RSS after {} deliveries (after the intake runs: {} deliveries) | {:.1} MB (then {:.1} MB) | flat |",
            last.0,
            first.0,
            last.1 as f64 / 1024.0,
            first.1 as f64 / 1024.0
        );
    }
    let _ = writeln!(
        out,
        "| start to ready, {} tasks in the database (median / max of {}) | {:.0} / {:.0} ms | ≤ 100 ms |",
        f.args.startup_tasks,
        startup.len(),
        quantile(&startup, 0.5),
        startup.last().copied().unwrap_or(0.0)
    );
    let _ = writeln!(out, "| RSS just after that start | {:.1} MB | |", f.startup_rss_kib as f64 / 1024.0);
    let _ = writeln!(out, "| release binary (stripped) | {:.1} MB | |", f.binary_bytes as f64 / 1_048_576.0);
    let samples: Vec<String> =
        f.rss_samples.iter().map(|(n, kib)| format!("{n}: {:.1} MB", *kib as f64 / 1024.0)).collect();
    let _ = writeln!(
        out,
        "| forgehand's sustained rate over those deliveries (3 KB, 64 connections) | {:.0} req/s | |",
        f.sustained_rps
    );
    let _ = writeln!(out, "\nRSS by deliveries recorded: {}.\n", samples.join(", "));
}

fn scale_tables(out: &mut String, f: &Figures) {
    let Some(largest) = f.scale.last() else { return };
    let _ = writeln!(out, "## Dashboard\n");
    let _ = writeln!(
        out,
        "{} tasks and {} deliveries in the database (one task every 10 s of history, so the last day \
         holds 8,640 of them), the newest task with a {}-line transcript; {} sequential GETs per page on one keep-alive connection \
         after one warm-up, logged in. Goal: p99 ≤ 20 ms.\n",
        largest.tasks,
        largest.tasks * crate::dashboard::DELIVERIES_PER_TASK,
        crate::dashboard::TRANSCRIPT_LINES,
        f.args.page_requests
    );
    let _ = writeln!(out, "| page | median ms | p99 ms | goal |");
    let _ = writeln!(out, "|---|---:|---:|---|");
    for page in &largest.pages {
        let verdict = if page.p99_ms <= 20.0 { "met" } else { "**not met**" };
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | p99 ≤ 20 ms: {verdict} |",
            page.name, page.median_ms, page.p99_ms
        );
    }
    let _ = writeln!(out, "\n## Scale curve\n");
    let _ = writeln!(
        out,
        "Each size is a fresh database; intake is {} deliveries (3 KB) at 16 connections on it. \
         Flat or logarithmic is the goal, never linear.\n",
        f.args.requests
    );
    let mut header = "| tasks | deliveries | fill s | intake req/s | intake p99 ms |".to_owned();
    let mut rule = "|---:|---:|---:|---:|---:|".to_owned();
    for page in &largest.pages {
        header.push_str(&format!(" {} p99 ms |", page.name));
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for point in &f.scale {
        let mut row = format!(
            "| {} | {} | {:.1} | {:.0} | {:.2} |",
            point.tasks,
            point.tasks * crate::dashboard::DELIVERIES_PER_TASK,
            point.fill_secs,
            point.intake_rps,
            point.intake_p99_ms
        );
        for page in &point.pages {
            row.push_str(&format!(" {:.2} |", page.p99_ms));
        }
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out);
}

fn fixed_rate_table(out: &mut String, f: &Figures) {
    if f.fixed_rate.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### At a fixed {} requests/s\n\n3 KB deliveries due every {:.1} ms over {} connections for {} s; \
         a request its connection could only send late (still waiting for the previous answer) counts from when it was due, so falling behind shows. Goal: p99 < 10 ms.\n",
        crate::FIXED_RATE,
        1000.0 / crate::FIXED_RATE,
        crate::FIXED_RATE_CONNECTIONS,
        f.args.run_secs
    );
    let _ = writeln!(out, "| server | answered 2xx | failed | p50 ms | p99 ms | max ms | goal |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|");
    for (name, run) in &f.fixed_rate {
        let mut latencies = run.latencies_us.clone();
        latencies.sort_unstable();
        let ms = |q: f64| f64::from(quantile(&latencies, q)) / 1000.0;
        let verdict = match *name {
            "forgehand" if ms(0.99) < 10.0 => "p99 < 10 ms: met",
            "forgehand" => "p99 < 10 ms: **not met**",
            _ => "",
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {:.2} | {:.2} | {:.2} | {verdict} |",
            run.ok,
            run.failed,
            ms(0.5),
            ms(0.99),
            ms(1.0)
        );
    }
    let _ = writeln!(out);
}

fn executor_table(out: &mut String, f: &Figures) {
    if let Some(x) = &f.executor {
        out.push_str(&executor_text(x));
    }
}

/// The executor section of the report.
pub fn executor_text(x: &crate::executor::ExecFigures) -> String {
    let mut out = String::new();
    let out = &mut out;
    let repos = &x.repos;
    let _ = writeln!(out, "## Executor overhead\n");
    let shapes: Vec<String> =
        repos.iter().map(|r| format!("{} files with {} commits", r.spec.files, r.spec.commits)).collect();
    let _ = writeln!(
        out,
        "The stand-in agent (tests/agent/fake-claude, edits one file) on repositories generated with \
         `git fast-import` ({}; generated in {:.1} s), served over `file://` by the fake forge of the test \
         suite; tasks one after the other on each, each on its own issue, one agent at a time. After the \
         first task on a repository, the next one starts from the mirror and the checkout the last task left \
         (recycled). Beside it, `git clone --mirror` of the same repository over the same transport. Peak RSS \
         is sampled every 10 ms over the whole process tree (forgehand's: the daemon and the git it runs).\n",
        shapes.join("; "),
        x.generate_secs,
    );
    let header: Vec<String> =
        repos.iter().map(|r| format!("{} commits, {} files", r.spec.commits, r.spec.files)).collect();
    let _ = writeln!(out, "| figure | {} | goal |", header.join(" | "));
    let _ = writeln!(out, "|---|{}---|", "---:|".repeat(repos.len()));
    let row = |out: &mut String, figure: &str, goal: &str, cell: &dyn Fn(&RepoFigures) -> String| {
        let cells: Vec<String> = repos.iter().map(cell).collect();
        let _ = writeln!(out, "| {figure} | {} | {goal} |", cells.join(" | "));
    };
    let first = |r: &RepoFigures| r.start_ms.first().copied();
    row(out, "first task: webhook → agent start (clones the repository)", "", &|r| {
        first(r).map_or("–".to_owned(), |ms| format!("{ms:.0} ms"))
    });
    row(out, "`git clone --mirror`, same repository and transport", "", &|r| {
        format!("{:.0} ms", r.git_mirror_ms)
    });
    row(out, "first task / `git clone --mirror`", "≤ 2×", &|r| {
        first(r).map_or("–".to_owned(), |ms| format!("{:.2}×", ms / r.git_mirror_ms.max(1e-9)))
    });
    row(out, "`git clone` with its checkout (the files a task needs too)", "", &|r| {
        format!("{:.0} ms", r.git_clone_ms)
    });
    row(out, "first task / `git clone` with checkout", "", &|r| {
        first(r).map_or("–".to_owned(), |ms| format!("{:.2}×", ms / r.git_clone_ms.max(1e-9)))
    });
    row(out, "peak RSS: forgehand's first task (daemon + git) vs `git clone --mirror`", "", &|r| {
        format!(
            "{:.0} vs {:.0} MB",
            r.first_task_peak_kib as f64 / 1024.0,
            r.git_mirror_peak_kib as f64 / 1024.0
        )
    });
    row(
        out,
        "next tasks: webhook → agent start, warm mirror (median / max)",
        "≤ 300 ms, flat in depth",
        &|r| median_max(r.start_ms.get(1..).unwrap_or_default()),
    );
    row(out, "agent end → pull request open: commit, push, PR (median / max)", "", &|r| {
        median_max(&r.publish_ms)
    });
    let _ = writeln!(out);
    std::mem::take(out)
}

/// "median / max ms" of `values`, or a dash when there are none.
fn median_max(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.last() {
        Some(max) => format!("{:.0} / {max:.0} ms", quantile(&sorted, 0.5)),
        None => "–".to_owned(),
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown");
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let free = std::process::Command::new("free")
        .arg("-h")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("CPU: {} × {cpus}\nLinux {}{}", model.trim(), kernel, free.unwrap_or_default())
}

/// Writes `text`, keeping whatever followed the marker in the existing file.
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    let kept = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| old.split_once(MARKER).map(|(_, notes)| notes.trim_start_matches('\n').to_owned()))
        .unwrap_or_default();
    std::fs::write(path, format!("{text}\n{kept}"))?;
    Ok(())
}
