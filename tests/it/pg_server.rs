//! A PostgreSQL server of the test's own, in a temp dir on a free port, that the test may
//! stop and start: for what an external server cannot show (an outage).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running PostgreSQL cluster; stopped when dropped.
pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PgServer {
    /// initdb + start. Fails the test with a clear message when PostgreSQL is not installed.
    pub fn start() -> PgServer {
        let bin = pg_bin().expect(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: \
             install them (apt-get install postgresql) — .ci/run does",
        );
        let dir = tempfile::tempdir().unwrap();
        // PostgreSQL refuses to run as root: hand the directory to the postgres user.
        if is_root() {
            run(Command::new("chown").args(["-R", "postgres"]).arg(dir.path()));
        }
        let data = dir.path().join("data");
        as_owner(&bin.join("initdb"), &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "forgehand"]);
        let server = PgServer { bin, dir, port: free_port() };
        server.up();
        server
    }

    /// The URL of database `postgres` (create others through it).
    pub fn url(&self) -> String {
        format!("postgres://forgehand@127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let data = self.data();
        let log = self.dir.path().join("log");
        as_owner(
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "-o", &options, "start"],
        );
    }

    /// Stops the server at once, dropping every connection.
    pub fn down(&self) {
        let data = self.data();
        as_owner(&self.bin.join("pg_ctl"), &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = owner_command(
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        )
        .output();
    }
}

fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn owner_command(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut command = Command::new("su");
        let line = std::iter::once(program.to_str().unwrap().to_owned())
            .chain(args.iter().map(|a| format!("'{a}'")))
            .collect::<Vec<_>>()
            .join(" ");
        command.args(["postgres", "-s", "/bin/sh", "-c", &line]);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn as_owner(program: &Path, args: &[&str]) {
    run(&mut owner_command(program, args));
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
