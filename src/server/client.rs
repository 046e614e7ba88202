//! Who a request comes from: the address wrong admin tokens are counted against, and a
//! note of proxies that forward requests without being trusted (so every client behind
//! them shares the proxy's address).

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::SystemTime;

use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;

use super::AppState;

/// A proxy seen forwarding (`X-Forwarded-For`) from an address not in
/// `server.trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UntrustedProxy {
    /// The proxy's address (the connection's peer).
    pub address: IpAddr,
    /// When it was last seen.
    pub last_seen: SystemTime,
}

/// The last [`UntrustedProxy`] seen since start, kept in memory.
#[derive(Default)]
pub struct Forwarding(Mutex<Option<UntrustedProxy>>);

impl Forwarding {
    /// The last request with `X-Forwarded-For` from an untrusted peer, if any arrived
    /// since forgehand started: for the setup page and `forgehand doctor`.
    pub fn last_untrusted(&self) -> Option<UntrustedProxy> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note(&self, address: IpAddr) {
        let seen = UntrustedProxy { address, last_seen: SystemTime::now() };
        let before = self.0.lock().unwrap_or_else(|e| e.into_inner()).replace(seen);
        if before.is_none_or(|b| b.address != address) {
            tracing::warn!(
                proxy = %address,
                "a request from {address} carries X-Forwarded-For, but {address} is not in server.trusted_proxies: \
                 every client behind it counts as {address} for the admin token limit; add it to server.trusted_proxies if it is your reverse proxy"
            );
        }
    }
}

/// Remembers `request`'s peer when it forwards for others without being trusted.
pub fn note_forwarding(state: &AppState, request: &Request) {
    if !request.headers().contains_key("x-forwarded-for") {
        return;
    }
    let peer = peer(request);
    if !state.settings().server.trusted_proxies.contains(&peer) {
        state.forwarding.note(peer);
    }
}

/// The connection's peer address.
fn peer(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The address failed logins are counted against: the connection's peer, or, when the
/// peer is a trusted proxy, the right-most `X-Forwarded-For` address that is not one
/// (entries further left are whatever the client sent). IPv6 clients count per /64,
/// the block one host usually has.
pub fn client_ip(request: &Request, trusted_proxies: &[IpAddr]) -> IpAddr {
    let peer = peer(request);
    let client = if trusted_proxies.contains(&peer) {
        forwarded_for(request.headers(), trusted_proxies)
    } else {
        None
    };
    rate_key(client.unwrap_or(peer))
}

pub(crate) fn forwarded_for(headers: &HeaderMap, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.into_iter().rev() {
        let ip = hop.parse::<IpAddr>().ok()?;
        if !trusted_proxies.contains(&ip) {
            return Some(ip);
        }
    }
    None
}

fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: &[&str]) -> Request {
        let mut builder = Request::builder().uri("/login");
        for value in forwarded {
            builder = builder.header("x-forwarded-for", *value);
        }
        let mut request = builder.body(axum::body::Body::empty()).unwrap();
        request.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        request
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_peer_counts_unless_it_is_a_trusted_proxy() {
        let proxy = [ip("10.0.0.2")];
        assert_eq!(client_ip(&request("198.51.100.9:5000", &["203.0.113.7"]), &[]), ip("198.51.100.9"));
        assert_eq!(client_ip(&request("198.51.100.9:5000", &["203.0.113.7"]), &proxy), ip("198.51.100.9"));
        assert_eq!(client_ip(&request("10.0.0.2:5000", &["203.0.113.7"]), &proxy), ip("203.0.113.7"));
        assert_eq!(client_ip(&request("10.0.0.2:5000", &[]), &proxy), ip("10.0.0.2"));
    }

    #[test]
    fn a_forged_left_part_of_the_header_is_ignored() {
        let proxies = [ip("10.0.0.2"), ip("10.0.0.3")];
        let chained = request("10.0.0.2:1", &["1.2.3.4, 203.0.113.7", "10.0.0.3"]);
        assert_eq!(client_ip(&chained, &proxies), ip("203.0.113.7"));
        let garbage = request("10.0.0.2:1", &["1.2.3.4, not-an-ip"]);
        assert_eq!(client_ip(&garbage, &proxies), ip("10.0.0.2"), "an unreadable hop: the proxy counts");
    }

    #[test]
    fn ipv6_clients_count_per_64_block() {
        let a = client_ip(&request("[2001:db8:1:2::1]:1", &[]), &[]);
        let b = client_ip(&request("[2001:db8:1:2:ffff::9]:1", &[]), &[]);
        let other = client_ip(&request("[2001:db8:1:3::1]:1", &[]), &[]);
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(client_ip(&request("[::ffff:192.0.2.1]:1", &[]), &[]), ip("192.0.2.1"));
    }
}
