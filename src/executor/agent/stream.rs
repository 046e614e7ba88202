//! The stream pump: reads the agent's stdout line by line as it arrives (into a capped
//! transcript file, its profile's reader and an optional live channel) and keeps the tail
//! of its stderr.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStderr, ChildStdout};
use tokio::sync::mpsc;

use super::{
    AgentEnd, AgentError, AgentEvent, AgentResult, AgentRun, MAX_LINE_BYTES, STDERR_TAIL_BYTES, io_error,
    profile,
};

/// The `type` of the line forgehand adds at the end of each run in the transcript.
pub const VERDICT_TYPE: &str = "forgehand.verdict";

/// How long output is still read after the process group was stopped.
pub(super) const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(5);

/// Reads stdout and stderr while the process runs and collects what they say.
pub(super) struct Pump {
    lines: Option<LineReader<ChildStdout>>,
    stderr: Option<ChildStderr>,
    stderr_tail: Tail,
    sink: Sink,
}

impl Pump {
    pub(super) fn new(
        child: &mut Child,
        transcript: Transcript,
        reader: profile::Reader,
        events: Option<mpsc::UnboundedSender<AgentEvent>>,
    ) -> Pump {
        Pump {
            lines: child.stdout.take().map(|out| LineReader::new(out, MAX_LINE_BYTES)),
            stderr: child.stderr.take(),
            stderr_tail: Tail::new(STDERR_TAIL_BYTES),
            sink: Sink { transcript, reader, events, session_id: None, result: None },
        }
    }

    /// Pumps output until both streams end after `supervise` has finished, or until
    /// [`DRAIN_AFTER_EXIT`] has passed since (a process that left the group may hold them).
    pub(super) async fn run(
        &mut self,
        supervise: impl Future<Output = io::Result<AgentEnd>>,
    ) -> io::Result<AgentEnd> {
        tokio::pin!(supervise);
        let drain = tokio::time::sleep(DRAIN_AFTER_EXIT);
        tokio::pin!(drain);
        let mut end = None;
        let mut chunk = vec![0; 8192];
        while end.is_none() || self.lines.is_some() || self.stderr.is_some() {
            tokio::select! {
                read = next_line(&mut self.lines) => self.on_stdout(read).await,
                read = read_some(&mut self.stderr, &mut chunk) => self.on_stderr(read, &chunk),
                done = &mut supervise, if end.is_none() => {
                    end = Some(done?);
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
                () = &mut drain, if end.is_some() => break,
            }
        }
        Ok(end.expect("the loop only ends after supervise"))
    }

    async fn on_stdout(&mut self, read: io::Result<Filled>) {
        let Some(lines) = self.lines.as_mut() else { return };
        match read {
            Ok(Filled::Line) => {
                self.sink.line(lines.line()).await;
                lines.clear();
            }
            Ok(Filled::Partial) => {}
            Ok(Filled::End) => self.lines = None,
            Err(error) => {
                tracing::warn!(%error, "cannot read the agent's output");
                self.lines = None;
            }
        }
    }

    fn on_stderr(&mut self, read: io::Result<usize>, chunk: &[u8]) {
        match read {
            Ok(0) | Err(_) => self.stderr = None,
            Ok(n) => self.stderr_tail.push(&chunk[..n]),
        }
    }

    /// Ends the transcript with forgehand's verdict on the run: the CLI's own last line may
    /// say `success` of a run that failed (permission denials, a non-zero exit).
    pub(super) async fn finish(mut self, end: AgentEnd, duration: Duration) -> AgentRun {
        if let Some(event) = self.sink.reader.finish(end) {
            self.sink.emit(event);
        }
        let mut run = AgentRun {
            end,
            session_id: self.sink.session_id,
            result: self.sink.result,
            stderr_tail: String::from_utf8_lossy(&self.stderr_tail.bytes).into_owned(),
            transcript_bytes: 0,
            duration,
        };
        let verdict = super::verdict::outcome(&run);
        let line = serde_json::json!({
            "type": VERDICT_TYPE,
            "success": verdict.is_success(),
            "reason": verdict.reason(),
        });
        self.sink.transcript.append(line.to_string().as_bytes()).await;
        run.transcript_bytes = self.sink.transcript.finish().await;
        run
    }
}

async fn next_line<R: AsyncRead + Unpin>(lines: &mut Option<LineReader<R>>) -> io::Result<Filled> {
    match lines {
        Some(lines) => lines.fill().await,
        None => std::future::pending().await,
    }
}

async fn read_some(stream: &mut Option<ChildStderr>, chunk: &mut [u8]) -> io::Result<usize> {
    match stream {
        Some(stream) => stream.read(chunk).await,
        None => std::future::pending().await,
    }
}

/// Where parsed lines go: the transcript, the live channel and the run's summary.
struct Sink {
    transcript: Transcript,
    reader: profile::Reader,
    events: Option<mpsc::UnboundedSender<AgentEvent>>,
    session_id: Option<String>,
    result: Option<AgentResult>,
}

impl Sink {
    async fn line(&mut self, line: &[u8]) {
        if !line.trim_ascii().is_empty() {
            self.transcript.append(line).await;
        }
        for event in self.reader.line(line) {
            self.emit(event);
        }
    }

    fn emit(&mut self, event: AgentEvent) {
        self.observe(&event);
        if let Some(events) = &self.events {
            // A closed channel only means nobody watches live any more.
            let _ = events.send(event);
        }
    }

    fn observe(&mut self, event: &AgentEvent) {
        match event {
            AgentEvent::Init { session_id: Some(id), .. } => self.session_id = Some(id.clone()),
            AgentEvent::Result(result) => {
                if let Some(id) = &result.session_id {
                    self.session_id = Some(id.clone());
                }
                self.result = Some(result.clone());
            }
            _ => {}
        }
    }
}

/// The transcript file: whole lines appended until the next one would pass the cap.
pub(super) struct Transcript {
    file: Option<BufWriter<File>>,
    room: u64,
    written: u64,
}

impl Transcript {
    pub(super) async fn open(path: &Path, max_bytes: u64) -> Result<Transcript, AgentError> {
        let context = || format!("cannot open the agent transcript {}", path.display());
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await.map_err(|e| io_error(&context(), e))?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path).await;
        let file = file.map_err(|e| io_error(&context(), e))?;
        let existing = file.metadata().await.map_err(|e| io_error(&context(), e))?.len();
        let room = max_bytes.saturating_sub(existing);
        Ok(Transcript { file: Some(BufWriter::new(file)), room, written: 0 })
    }

    async fn append(&mut self, line: &[u8]) {
        let Some(file) = self.file.as_mut() else { return };
        let len = line.len() as u64 + 1;
        if self.written + len > self.room {
            self.close().await;
            return;
        }
        let write = async {
            file.write_all(line).await?;
            file.write_all(b"\n").await
        };
        match write.await {
            Ok(()) => self.written += len,
            Err(error) => {
                tracing::warn!(%error, "cannot append to the agent transcript; it stops here");
                self.file = None;
            }
        }
    }

    async fn close(&mut self) {
        if let Some(mut file) = self.file.take()
            && let Err(error) = file.flush().await
        {
            tracing::warn!(%error, "cannot write the agent transcript");
        }
    }

    async fn finish(mut self) -> u64 {
        self.close().await;
        self.written
    }
}

/// What [`LineReader::fill`] found.
enum Filled {
    /// A whole line (or the last, unterminated one) is ready in [`LineReader::line`].
    Line,
    /// More of the current line was read; call again.
    Partial,
    End,
}

/// Splits a byte stream into lines of at most `cap` bytes, dropping the rest of longer
/// lines. `fill` is cancel-safe: its state lives here, not in the future.
struct LineReader<R> {
    reader: BufReader<R>,
    line: Vec<u8>,
    cap: usize,
    ready: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R, cap: usize) -> LineReader<R> {
        LineReader { reader: BufReader::with_capacity(64 << 10, inner), line: Vec::new(), cap, ready: false }
    }

    async fn fill(&mut self) -> io::Result<Filled> {
        if self.ready {
            self.clear();
        }
        let chunk = self.reader.fill_buf().await?;
        if chunk.is_empty() {
            self.ready = !self.line.is_empty();
            return Ok(if self.ready { Filled::Line } else { Filled::End });
        }
        let newline = chunk.iter().position(|&b| b == b'\n');
        let take = newline.map_or(chunk.len(), |at| at + 1);
        let keep = newline.unwrap_or(take).min(self.cap - self.line.len());
        self.line.extend_from_slice(&chunk[..keep]);
        self.reader.consume(take);
        self.ready = newline.is_some();
        Ok(if self.ready { Filled::Line } else { Filled::Partial })
    }

    /// The current line without its line ending.
    fn line(&self) -> &[u8] {
        self.line.strip_suffix(b"\r").unwrap_or(&self.line)
    }

    fn clear(&mut self) {
        self.line.clear();
        self.ready = false;
    }
}

/// The last `cap` bytes written to it.
struct Tail {
    bytes: Vec<u8>,
    cap: usize,
}

impl Tail {
    fn new(cap: usize) -> Tail {
        Tail { bytes: Vec::new(), cap }
    }

    fn push(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(self.cap)..];
        let overflow = (self.bytes.len() + data.len()).saturating_sub(self.cap);
        self.bytes.drain(..overflow);
        self.bytes.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn line_reader_cuts_long_lines_and_keeps_the_last_one() {
        let input: &[u8] = b"short\r\n0123456789abcdef\nlast";
        let mut reader = LineReader::new(input, 8);
        let mut lines = Vec::new();
        loop {
            match reader.fill().await.unwrap() {
                Filled::Line => lines.push(String::from_utf8(reader.line().to_vec()).unwrap()),
                Filled::Partial => {}
                Filled::End => break,
            }
        }
        assert_eq!(lines, ["short", "01234567", "last"]);
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut tail = Tail::new(4);
        tail.push(b"abc");
        tail.push(b"def");
        assert_eq!(tail.bytes, b"cdef");
        tail.push(b"0123456789");
        assert_eq!(tail.bytes, b"6789");
    }
}
