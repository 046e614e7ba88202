//! A scripted stand-in for a model API on 127.0.0.1:0, for running real agent CLIs with
//! no internet: it answers the Anthropic Messages API (`POST /v1/messages`, Claude Code)
//! and the OpenAI Responses API (`POST /v1/responses`, Codex) with server-sent events
//! from a script, records every request, and can fail on purpose.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Replaced, in every string of a tool call's input, by the CLI's working directory.
pub const CWD: &str = "{cwd}";

/// One answer of the model.
#[derive(Clone, Debug)]
pub enum Turn {
    /// Tool calls `(name, input)`, e.g. `("Write", {"file_path": "{cwd}/a", "content": "x"})`.
    Tools(Vec<(String, Value)>),
    /// Final text: the run ends here.
    Text(String),
}

impl Turn {
    /// A `Write` call of `content` to `path`, relative to the working directory.
    pub fn write(path: &str, content: &str) -> Turn {
        Turn::Tools(vec![("Write".into(), json!({"file_path": format!("{CWD}/{path}"), "content": content}))])
    }

    /// An `Edit` call replacing `old` by `new` in `path`, relative to the working directory.
    pub fn edit(path: &str, old: &str, new: &str) -> Turn {
        let input = json!({"file_path": format!("{CWD}/{path}"), "old_string": old, "new_string": new});
        Turn::Tools(vec![("Edit".into(), input)])
    }

    /// A `Bash` call of `command`.
    pub fn bash(command: &str) -> Turn {
        Turn::Tools(vec![("Bash".into(), json!({"command": command, "description": "scripted"}))])
    }

    /// Codex's `exec_command` call of `command`, run in its working directory.
    pub fn shell(command: &str) -> Turn {
        Turn::Tools(vec![("exec_command".into(), json!({"cmd": command}))])
    }

    pub fn text(text: &str) -> Turn {
        Turn::Text(text.into())
    }
}

/// How the server answers `/v1/messages`.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Turn `n` answers the request that carries `n` assistant turns; past the end the last
    /// turn repeats (a script ending in tool calls never stops).
    Script(Vec<Turn>),
    /// Every request fails with this status and an Anthropic error body.
    Status(u16),
    /// Headers and `message_start`, then nothing, forever.
    Stall,
    /// The first `times` agent-loop requests fail with `status`; then `then` answers.
    FailFirst { status: u16, times: usize, then: Box<Behaviour> },
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    behaviour: Option<Behaviour>,
    requests: Vec<Recorded>,
    /// Agent-loop requests failed on purpose so far (`Behaviour::FailFirst`).
    failed: usize,
}

/// A running scripted model server.
pub struct ModelServer {
    /// `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ModelServer {
    pub async fn start(behaviour: Behaviour) -> ModelServer {
        let shared = Arc::new(Mutex::new(Shared { behaviour: Some(behaviour), ..Shared::default() }));
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        ModelServer { url, shared, task }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// The bodies of the agent-loop requests to `/v1/messages` or `/v1/responses` (those
    /// that offer tools).
    pub fn turn_requests(&self) -> Vec<Value> {
        let requests = self.requests().into_iter().filter(|r| model_path(&r.path));
        requests.map(|r| r.body).filter(has_tools).collect()
    }
}

fn model_path(path: &str) -> bool {
    path.starts_with("/v1/messages") || path.starts_with("/v1/responses")
}

async fn answer(State(shared): State<Arc<Mutex<Shared>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let path = parts.uri.path_and_query().map_or(parts.uri.path(), |p| p.as_str()).to_owned();
    let behaviour = {
        let mut shared = shared.lock().unwrap();
        let recorded = Recorded { method: parts.method.to_string(), path: path.clone(), body: body.clone() };
        shared.requests.push(recorded);
        match shared.behaviour.clone().unwrap() {
            Behaviour::FailFirst { status, times, then } if has_tools(&body) => {
                shared.failed += 1;
                if shared.failed <= times { Behaviour::Status(status) } else { *then }
            }
            Behaviour::FailFirst { then, .. } => *then,
            behaviour => behaviour,
        }
    };
    if parts.method != Method::POST || !model_path(&path) {
        return (
            StatusCode::NOT_FOUND,
            "the scripted model server only answers /v1/messages and /v1/responses",
        )
            .into_response();
    }
    if path.starts_with("/v1/responses") {
        return responses::answer(&body, behaviour);
    }
    if path.starts_with("/v1/messages/count_tokens") {
        return axum::Json(json!({"input_tokens": 100})).into_response();
    }
    match behaviour {
        Behaviour::Status(status) => error(status),
        Behaviour::Stall => stalled(&body),
        Behaviour::FailFirst { .. } => unreachable!("resolved above"),
        Behaviour::Script(turns) => {
            // Side requests (titles, summaries) offer no tools and do not advance the script.
            let turn = if has_tools(&body) {
                next_turn(&turns, assistant_turns(&body))
            } else {
                Turn::text("Scripted side answer")
            };
            let turn = with_cwd(turn, &working_directory(&body));
            if body["stream"] == true { stream(&body, &turn) } else { whole(&body, &turn) }
        }
    }
}

/// The next turn of `turns` for a conversation in which the model answered `done` times.
fn next_turn(turns: &[Turn], done: usize) -> Turn {
    turns.get(done).or(turns.last()).cloned().unwrap_or(Turn::text("Done."))
}

fn has_tools(body: &Value) -> bool {
    body["tools"].as_array().is_some_and(|t| !t.is_empty())
}

/// How many times the model has answered in this conversation; `system` entries and tool
/// results in between do not count.
fn assistant_turns(body: &Value) -> usize {
    let messages = body["messages"].as_array().map_or(&[][..], |m| m.as_slice());
    messages.iter().filter(|m| m["role"] == "assistant").count()
}

/// The CLI's working directory, from its `Primary working directory: …` line.
fn working_directory(body: &Value) -> String {
    const LINE: &str = "working directory: ";
    // The CLI states it in a context message; a resumed session also carries the older
    // runs' messages, which name their own checkouts: the last mention is this run's.
    let text = body["messages"].to_string();
    // Unknown: a path that cannot exist, never `/` (the tests may run as root).
    let Some(at) = text.rfind(LINE) else { return "/nonexistent-working-directory".into() };
    let rest = &text[at + LINE.len()..];
    rest.split(['\\', '"', ' ']).next().unwrap_or("").to_owned()
}

fn with_cwd(turn: Turn, cwd: &str) -> Turn {
    fn fill(value: &mut Value, cwd: &str) {
        match value {
            Value::String(s) => *s = s.replace(CWD, cwd),
            Value::Array(items) => items.iter_mut().for_each(|v| fill(v, cwd)),
            Value::Object(map) => map.values_mut().for_each(|v| fill(v, cwd)),
            _ => {}
        }
    }
    match turn {
        Turn::Tools(mut calls) => {
            calls.iter_mut().for_each(|(_, input)| fill(input, cwd));
            Turn::Tools(calls)
        }
        text => text,
    }
}

fn error(status: u16) -> Response {
    let kind = match status {
        429 => "rate_limit_error",
        529 => "overloaded_error",
        400 => "invalid_request_error",
        _ => "api_error",
    };
    let body = json!({"type": "error", "error": {"type": kind, "message": format!("scripted {status}")}});
    let status = StatusCode::from_u16(status).unwrap();
    (status, [("retry-after", "0")], axum::Json(body)).into_response()
}

fn usage() -> Value {
    json!({"input_tokens": 1200, "output_tokens": 80, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
}

fn blocks(turn: &Turn) -> Vec<Value> {
    match turn {
        Turn::Text(text) => vec![json!({"type": "text", "text": text})],
        Turn::Tools(calls) => calls
            .iter()
            .enumerate()
            .map(|(i, (name, input))| {
                json!({"type": "tool_use", "id": format!("toolu_scripted_{i}_{}", rand_id()), "name": name, "input": input})
            })
            .collect(),
    }
}

fn rand_id() -> String {
    crate::harness::new_id().replace('-', "")
}

fn stop_reason(turn: &Turn) -> &'static str {
    if matches!(turn, Turn::Text(_)) { "end_turn" } else { "tool_use" }
}

fn message(body: &Value, content: Vec<Value>, stop: Option<&str>) -> Value {
    json!({
        "id": format!("msg_{}", rand_id()), "type": "message", "role": "assistant",
        "model": body["model"], "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": usage(),
    })
}

fn whole(body: &Value, turn: &Turn) -> Response {
    axum::Json(message(body, blocks(turn), Some(stop_reason(turn)))).into_response()
}

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn stream(body: &Value, turn: &Turn) -> Response {
    let mut out =
        event("message_start", &json!({"type": "message_start", "message": message(body, vec![], None)}));
    for (index, block) in blocks(turn).into_iter().enumerate() {
        let (start, delta) = match block["type"].as_str() {
            Some("text") => {
                (json!({"type": "text", "text": ""}), json!({"type": "text_delta", "text": block["text"]}))
            }
            _ => (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
            ),
        };
        let start = json!({"type": "content_block_start", "index": index, "content_block": start});
        out += &event("content_block_start", &start);
        out += &event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
        out += &event("content_block_stop", &json!({"type": "content_block_stop", "index": index}));
    }
    let delta = json!({
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason(turn), "stop_sequence": null},
        "usage": {"output_tokens": 80},
    });
    out += &event("message_delta", &delta);
    out += &event("message_stop", &json!({"type": "message_stop"}));
    sse(Body::from(out))
}

fn stalled(body: &Value) -> Response {
    let start =
        event("message_start", &json!({"type": "message_start", "message": message(body, vec![], None)}));
    let first = futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(start)) });
    sse(Body::from_stream(first.chain(futures_util::stream::pending())))
}

fn sse(body: Body) -> Response {
    let headers = [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")];
    (StatusCode::OK, headers, body).into_response()
}

/// The OpenAI Responses API as Codex calls it: `input` items in, SSE events out.
mod responses {
    use super::*;

    pub fn answer(body: &Value, behaviour: Behaviour) -> Response {
        match behaviour {
            Behaviour::Status(status) => {
                let error = json!({"error": {"message": format!("scripted {status}"), "type": "scripted", "code": null}});
                (StatusCode::from_u16(status).unwrap(), axum::Json(error)).into_response()
            }
            Behaviour::Stall => {
                let created = event(
                    "response.created",
                    &json!({"type": "response.created", "response": {"id": "resp_stall"}}),
                );
                let first =
                    futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(created)) });
                sse(Body::from_stream(first.chain(futures_util::stream::pending())))
            }
            Behaviour::Script(turns) => {
                let turn = next_turn(&turns, answered(body));
                stream(&turn)
            }
            Behaviour::FailFirst { .. } => unreachable!("resolved by the caller"),
        }
    }

    /// How many times the model answered: its calls and messages among the input items
    /// (one call per scripted turn).
    fn answered(body: &Value) -> usize {
        let items = body["input"].as_array().map_or(&[][..], |i| i.as_slice());
        let answer = |item: &&Value| item["type"] == "function_call" || item["role"] == "assistant";
        items.iter().filter(answer).count()
    }

    fn items(turn: &Turn) -> Vec<Value> {
        match turn {
            Turn::Text(text) => vec![json!({
                "type": "message", "id": format!("msg_{}", rand_id()), "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            })],
            Turn::Tools(calls) => calls
                .iter()
                .map(|(name, input)| {
                    let mut call = json!({
                        "type": "function_call", "id": format!("fc_{}", rand_id()), "status": "completed",
                        "call_id": format!("call_{}", rand_id()), "name": name, "arguments": input.to_string(),
                    });
                    // `namespace/name`: a tool of a namespace (how Codex offers an MCP server's tools).
                    if let Some((namespace, tool)) = name.split_once('/') {
                        call["namespace"] = json!(namespace);
                        call["name"] = json!(tool);
                    }
                    call
                })
                .collect(),
        }
    }

    fn stream(turn: &Turn) -> Response {
        let id = format!("resp_{}", rand_id());
        let mut out = event("response.created", &json!({"type": "response.created", "response": {"id": id}}));
        for (index, item) in items(turn).into_iter().enumerate() {
            let added = json!({"type": "response.output_item.added", "output_index": index, "item": item});
            out += &event("response.output_item.added", &added);
            let done = json!({"type": "response.output_item.done", "output_index": index, "item": item});
            out += &event("response.output_item.done", &done);
        }
        let usage = json!({
            "input_tokens": 1200, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 80, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1280,
        });
        let completed = json!({"type": "response.completed", "response": {"id": id, "usage": usage}});
        out += &event("response.completed", &completed);
        sse(Body::from(out))
    }
}
