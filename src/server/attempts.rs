//! The one count of wrong admin tokens per client that every way of presenting the token
//! (the login form, the API's Bearer header) goes through.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::token::generate_token;

/// Wrong admin tokens allowed per client within [`ATTEMPT_WINDOW`]; more are refused
/// (`429`) without being compared.
pub const MAX_WRONG_TOKENS: usize = 5;
/// The window wrong tokens are counted in.
pub const ATTEMPT_WINDOW: Duration = Duration::from_secs(60);
/// Browsers remembered as having logged in (see [`Client::Device`]).
const MAX_DEVICES: usize = 256;

/// Who a presented admin token is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// A client address (see [`super::client::client_ip`]).
    Address(IpAddr),
    /// A browser that logged in before, known by its device cookie (kept as a digest). It
    /// has a count of its own, so wrong tokens sent by others from the same address (a
    /// shared proxy) do not lock it out.
    Device([u8; 32]),
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Address(ip) => write!(f, "{ip}"),
            Client::Device(digest) => {
                write!(f, "device {:02x}{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2], digest[3])
            }
        }
    }
}

/// What presenting a token got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admin,
    Wrong,
    /// Too many wrong tokens from this client lately: not compared at all.
    Locked,
}

/// Wrong admin tokens per client, and the device cookies handed out at login. Checking a
/// token and counting it happen under one lock: concurrent guesses cannot all pass the
/// check before any is counted.
#[derive(Default)]
pub struct Attempts {
    wrong: Mutex<HashMap<Client, Vec<Instant>>>,
    devices: Mutex<VecDeque<[u8; 32]>>,
}

impl Attempts {
    /// Compares a presented token with the admin token (`is_admin`) unless `client` is
    /// locked out, and counts it when wrong. `via` names the way it was presented, for
    /// the log.
    pub fn try_token(&self, client: Client, via: &str, is_admin: impl FnOnce() -> bool) -> Verdict {
        let mut wrong = self.wrong.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        wrong.retain(|_, times| {
            times.retain(|t| now.duration_since(*t) < ATTEMPT_WINDOW);
            !times.is_empty()
        });
        let times = wrong.entry(client).or_default();
        if times.len() >= MAX_WRONG_TOKENS {
            tracing::debug!(%client, via, "admin token refused unread: too many wrong ones from this client");
            return Verdict::Locked;
        }
        if is_admin() {
            return Verdict::Admin;
        }
        times.push(now);
        let count = times.len();
        tracing::warn!(%client, via, wrong_tokens_in_the_last_minute = count, "a wrong admin token was presented");
        Verdict::Wrong
    }

    /// A new device id for a browser that just logged in, to send back as a cookie.
    pub fn new_device(&self) -> std::io::Result<String> {
        let id = generate_token()?;
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        if devices.len() >= MAX_DEVICES {
            devices.pop_front();
        }
        devices.push_back(Sha256::digest(id.as_bytes()).into());
        Ok(id)
    }

    /// The device a cookie value names, if this process handed it out.
    pub fn device(&self, id: &str) -> Option<Client> {
        let digest: [u8; 32] = Sha256::digest(id.as_bytes()).into();
        let devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        devices.contains(&digest).then_some(Client::Device(digest))
    }
}
