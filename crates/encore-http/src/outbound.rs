//! The outbound client: every request encore makes to a server it does not run (LLM judges,
//! alert and registry webhooks) goes through [`Outbound`]. It speaks http and https (rustls,
//! Mozilla's roots plus an optional CA file), honours `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`,
//! follows at most a few redirects, reads at most a bounded answer, and connects only to the
//! addresses its [`Allow`] list admits: the check runs on the resolved addresses of every hop,
//! so neither a redirect nor a DNS answer that changes after validation reaches a private
//! network the list does not name.
//!
//! [`deliver`] posts a webhook: signed (`X-Encore-Signature: t=<unix seconds>,v1=<hex
//! HMAC-SHA256 of "<t>.<body>">`), retried with jittered exponential backoff that honours
//! `Retry-After`, and not retried after a 4xx other than 408 and 429.

use hmac::{Hmac, Mac};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// One entry of an allow list.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    /// `*`: any public address
    AnyPublic,
    /// `hooks.example.com`: that host name, whatever it resolves to (private too)
    Host(String),
    /// `*.example.com`: names under it, public addresses only
    Suffix(String),
    /// `10.1.0.0/16`, `127.0.0.1`, `::1`: addresses in the network, private ones too
    Net(IpAddr, u8),
}

/// Destinations outbound requests may reach. Private, loopback, link-local and other
/// non-public addresses are reached only through an entry that names them (their host name
/// exactly, or an address or network containing them).
#[derive(Debug, Clone, PartialEq)]
pub struct Allow {
    entries: Vec<Entry>,
}

impl Allow {
    /// No restriction at all (the operator's own judge endpoints, configured in a file).
    pub fn everything() -> Allow {
        Allow {
            entries: vec![
                Entry::AnyPublic,
                Entry::Net(IpAddr::from([0u8; 16]), 0),
                Entry::Net(IpAddr::from([0u8; 4]), 0),
            ],
        }
    }

    /// Parses entries: `*`, a host name, `*.suffix`, an IP address or a CIDR network.
    pub fn parse(entries: &[String]) -> Result<Allow, OutboundError> {
        let mut out = Vec::new();
        for raw in entries {
            let e = raw.trim().to_ascii_lowercase();
            let entry = if e == "*" {
                Entry::AnyPublic
            } else if let Some(suffix) = e.strip_prefix("*.") {
                check_host(suffix)
                    .map_err(|m| OutboundError::Invalid(format!("allow entry {raw:?}: {m}")))?;
                Entry::Suffix(format!(".{suffix}"))
            } else if let Some((ip, bits)) = e.split_once('/') {
                let ip: IpAddr = ip.parse().map_err(|_| {
                    OutboundError::Invalid(format!(
                        "allow entry {raw:?}: {ip:?} is not an IP address"
                    ))
                })?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let bits: u8 = bits.parse().ok().filter(|b| *b <= max).ok_or_else(|| {
                    OutboundError::Invalid(format!(
                        "allow entry {raw:?}: the prefix must be 0..={max}"
                    ))
                })?;
                Entry::Net(ip, bits)
            } else if let Ok(ip) = e.trim_matches(['[', ']']).parse::<IpAddr>() {
                Entry::Net(ip, if ip.is_ipv4() { 32 } else { 128 })
            } else {
                check_host(&e)
                    .map_err(|m| OutboundError::Invalid(format!("allow entry {raw:?}: {m}")))?;
                Entry::Host(e)
            };
            out.push(entry);
        }
        Ok(Allow { entries: out })
    }

    /// Whether `host` (as written in the URL) at the resolved address `ip` may be reached.
    pub fn allows(&self, host: &str, ip: IpAddr) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        let ip = canonical(ip);
        let public = is_public(ip);
        self.entries.iter().any(|e| match e {
            Entry::AnyPublic => public,
            Entry::Host(h) => *h == host,
            Entry::Suffix(s) => public && host.ends_with(s.as_str()),
            Entry::Net(net, bits) => contains(*net, *bits, ip),
        })
    }

    /// Checks a destination URL before it is stored (a rule's webhook): the scheme, the host,
    /// and, for a host that resolves now, its addresses. The same check runs again on every
    /// connection.
    pub fn check_url(&self, url: &str) -> Result<(), OutboundError> {
        let (host, port) = host_port(url)?;
        let addrs: Vec<SocketAddr> =
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .map(Iterator::collect)
                .unwrap_or_default();
        // a name that does not resolve yet is judged by name alone when it is delivered to
        match addrs.iter().find(|a| !self.allows(&host, a.ip())) {
            Some(a) => Err(OutboundError::Refused(format!(
                "{url}: {host} ({}) is not an allowed destination; allowed: [server] webhook_allow \
                 (private and loopback addresses only when listed)",
                a.ip()
            ))),
            None => Ok(()),
        }
    }
}

fn check_host(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{h:?} is not a host name"))
    }
}

/// The host and port of an `http://` or `https://` URL (ports default to 80 and 443).
pub fn host_port(url: &str) -> Result<(String, u16), OutboundError> {
    host_port_of(url).map_err(OutboundError::Invalid)
}

fn host_port_of(url: &str) -> Result<(String, u16), String> {
    let (rest, default_port) = if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, 80)
    } else {
        return Err(format!(
            "{url}: expected an address starting with https:// or http://"
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!("{url}: credentials in the URL are not accepted"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url}: unterminated IPv6 address"))?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let port = match port {
        None | Some("") => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{url}: bad port {p:?}"))?,
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is reachable on the public internet (not private, loopback, link-local,
/// shared, documentation, benchmarking, multicast, unspecified or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => {
            let [o0, o1, ..] = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_broadcast()
                || a.is_documentation()
                || a.is_unspecified()
                || a.is_multicast()
                || o0 == 0
                || (o0 == 100 && (64..128).contains(&o1)) // shared address space (CGNAT)
                || (o0 == 198 && (18..20).contains(&o1)) // benchmarking
                || o0 >= 240)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x64 && s[1] == 0xff9b)) // NAT64 (reaches IPv4 space)
        }
    }
}

fn contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (canonical(net), ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Resolves as usual, then keeps only the addresses the allow list admits; a proxy's own
/// address (configured by the operator) is not checked.
#[derive(Debug)]
struct Guarded {
    inner: DefaultResolver,
    allow: Arc<Allow>,
    proxy_host: Option<String>,
}

impl Resolver for Guarded {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let resolved = self.inner.resolve(uri, config, timeout)?;
        let host = uri.host().unwrap_or("").to_ascii_lowercase();
        if self.proxy_host.as_deref() == Some(host.as_str()) {
            return Ok(resolved);
        }
        let mut kept = self.empty();
        for a in resolved.iter() {
            if self.allow.allows(&host, a.ip()) {
                kept.push(*a);
            }
        }
        if kept.is_empty() {
            let ip = resolved
                .iter()
                .next()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            return Err(ureq::Error::BadUri(format!(
                "{host} ({ip}) is not an allowed destination (private and loopback addresses \
                 only when the allow list names them)"
            )));
        }
        Ok(kept)
    }
}

/// How the outbound client behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// for the whole request, answer included
    pub timeout: Duration,
    pub max_redirects: u32,
    /// a larger answer is an error (it is not read further)
    pub max_response_bytes: u64,
    /// PEM certificates trusted besides Mozilla's roots (a company CA, a test CA)
    pub extra_roots_pem: Option<Vec<u8>>,
    pub allow: Allow,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(30),
            max_redirects: 3,
            max_response_bytes: 4 << 20,
            extra_roots_pem: None,
            allow: Allow::everything(),
        }
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// `Retry-After` in seconds, when the server sent one
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// Why a call leaving encore failed, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundError {
    /// a URL, an allow-list entry or a CA file that does not read
    Invalid(String),
    /// the destination is not one encore may call
    Refused(String),
    /// the connection, TLS, or the answer failed (worth retrying)
    Failed(String),
}

impl std::fmt::Display for OutboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutboundError::Invalid(m) | OutboundError::Refused(m) | OutboundError::Failed(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for OutboundError {}

impl encore_core::Coded for OutboundError {
    fn code(&self) -> encore_core::ErrorCode {
        match self {
            OutboundError::Invalid(_) => encore_core::ErrorCode::InvalidArgument,
            OutboundError::Refused(_) => encore_core::ErrorCode::PermissionDenied,
            OutboundError::Failed(_) => encore_core::ErrorCode::Unavailable,
        }
    }
}

impl From<OutboundError> for String {
    fn from(e: OutboundError) -> String {
        e.to_string()
    }
}

/// The outbound HTTP client; cheap to clone (connections are pooled).
#[derive(Debug, Clone)]
pub struct Outbound {
    agent: ureq::Agent,
    max_response_bytes: u64,
    pub allow: Arc<Allow>,
}

impl Outbound {
    pub fn new(options: Options) -> Result<Outbound, OutboundError> {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let roots = match &options.extra_roots_pem {
            None => RootCerts::WebPki,
            Some(pem) => {
                let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                    .iter()
                    .map(|c| Certificate::from_der(c.as_ref()).to_owned())
                    .collect();
                let mut n = 0;
                for item in ureq::tls::parse_pem(pem) {
                    if let ureq::tls::PemItem::Certificate(c) =
                        item.map_err(|e| OutboundError::Invalid(format!("CA file: {e}")))?
                    {
                        certs.push(c.to_owned());
                        n += 1;
                    }
                }
                if n == 0 {
                    return Err(OutboundError::Invalid(
                        "CA file: no PEM certificate in it".into(),
                    ));
                }
                RootCerts::new_with_certs(&certs)
            }
        };
        let proxy = ureq::Proxy::try_from_env();
        let proxy_host = proxy.as_ref().map(|p| p.host().to_ascii_lowercase());
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .max_redirects(options.max_redirects)
            .http_status_as_error(false)
            .user_agent(concat!("encore/", env!("CARGO_PKG_VERSION")))
            .proxy(proxy)
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build();
        let allow = Arc::new(options.allow);
        let resolver = Guarded {
            inner: DefaultResolver::default(),
            allow: Arc::clone(&allow),
            proxy_host,
        };
        Ok(Outbound {
            agent: ureq::Agent::with_parts(config, DefaultConnector::default(), resolver),
            max_response_bytes: options.max_response_bytes,
            allow,
        })
    }

    /// GETs `url` with extra `headers`.
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Reply, OutboundError> {
        host_port(url)?;
        let mut req = self.agent.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.call().map_err(|e| failure(url, &e))?;
        self.reply(url, resp)
    }

    /// POSTs `body` as JSON with extra `headers`.
    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, OutboundError> {
        host_port(url)?;
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send(body).map_err(|e| failure(url, &e))?;
        self.reply(url, resp)
    }

    /// The status, `Retry-After` and at most `max_response_bytes` of the body.
    fn reply(
        &self,
        url: &str,
        mut resp: ureq::http::Response<ureq::Body>,
    ) -> Result<Reply, OutboundError> {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp
            .body_mut()
            .with_config()
            .limit(self.max_response_bytes)
            .read_to_string()
            .map_err(|e| failure(url, &e))?;
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }
}

/// A failed call: refused when the resolver refused the destination (on any hop), else failed.
fn failure(url: &str, e: &ureq::Error) -> OutboundError {
    let message = describe(url, e);
    if message.contains("not an allowed destination") {
        OutboundError::Refused(message)
    } else {
        OutboundError::Failed(message)
    }
}

fn describe(url: &str, e: &ureq::Error) -> String {
    match e {
        ureq::Error::BodyExceedsLimit(n) => format!("{url}: the answer is over {n} bytes"),
        ureq::Error::TooManyRedirects => format!("{url}: too many redirects"),
        other => format!("{url}: {other}"),
    }
}

/// The `X-Encore-Signature` value of `body` sent at `unix_s` with `secret`.
pub fn signature(secret: &[u8], unix_s: u64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(unix_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_s},v1={hex}")
}

/// Checks a received `X-Encore-Signature` header (for receivers written in Rust, and tests):
/// the tag must match and the timestamp be within `tolerance` of `now_s`.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_s: u64,
    tolerance: Duration,
) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", x)) => t = x.parse::<u64>().ok(),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if now_s.abs_diff(t) > tolerance.as_secs() {
        return false;
    }
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let Some(tag) = (0..v1.len() / 2)
        .map(|i| u8::from_str_radix(v1.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    mac.verify_slice(&tag).is_ok()
}

/// How a webhook is retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    /// the first wait; each next one doubles, with ±50 % jitter
    pub backoff: Duration,
    /// the longest wait, `Retry-After` included
    pub max_wait: Duration,
}

/// What became of a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub attempts: u32,
    pub delivered: bool,
    pub last_error: Option<String>,
}

/// Deliveries made by this process: (purpose, outcome) -> count, outcome `delivered` or
/// `failed` (after every retry), and attempts per purpose. Read by `/metrics`.
static DELIVERIES: std::sync::Mutex<BTreeMap<(&'static str, &'static str), u64>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Counts of deliveries so far: `(purpose, outcome, count)`, outcome `delivered`, `failed` or
/// `attempts` (every try, retries included).
pub fn delivery_counts() -> Vec<(&'static str, &'static str, u64)> {
    DELIVERIES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(&(purpose, outcome), &n)| (purpose, outcome, n))
        .collect()
}

/// POSTs `body` to `url`, signed with `secret` when there is one, retrying as `retry` says:
/// connection errors, 408, 429 and 5xx are retried; any other 4xx is final. `purpose`
/// (`webhook`, `alert`) labels the delivery in [`delivery_counts`].
pub fn deliver(
    client: &Outbound,
    purpose: &'static str,
    url: &str,
    body: &[u8],
    secret: Option<&[u8]>,
    retry: Retry,
) -> Delivery {
    let out = deliver_with_retries(client, url, body, secret, retry);
    let mut counts = DELIVERIES.lock().unwrap_or_else(|e| e.into_inner());
    let outcome = if out.delivered { "delivered" } else { "failed" };
    *counts.entry((purpose, outcome)).or_default() += 1;
    *counts.entry((purpose, "attempts")).or_default() += u64::from(out.attempts);
    out
}

fn deliver_with_retries(
    client: &Outbound,
    url: &str,
    body: &[u8],
    secret: Option<&[u8]>,
    retry: Retry,
) -> Delivery {
    let mut out = Delivery {
        attempts: 0,
        delivered: false,
        last_error: None,
    };
    let mut wait = retry.backoff;
    let mut seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    loop {
        out.attempts += 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sig = secret.map(|s| signature(s, now, body));
        let headers: Vec<(&str, &str)> = sig
            .as_deref()
            .map(|s| vec![("X-Encore-Signature", s)])
            .unwrap_or_default();
        let (retryable, after) = match client.post_json(url, &headers, body) {
            Ok(r) if (200..300).contains(&r.status) => {
                out.delivered = true;
                out.last_error = None;
                return out;
            }
            Ok(r) => {
                out.last_error = Some(format!("HTTP {}", r.status));
                (matches!(r.status, 408 | 429 | 500..=599), r.retry_after)
            }
            Err(e) => {
                // a refused destination will be refused again
                let refused = matches!(e, OutboundError::Refused(_));
                out.last_error = Some(e.to_string());
                (!refused, None)
            }
        };
        if !retryable || out.attempts >= retry.attempts.max(1) {
            return out;
        }
        // xorshift jitter: 0.5x .. 1.5x
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let jitter = 0.5 + (seed % 1000) as f64 / 1000.0;
        let pause = after
            .unwrap_or_else(|| wait.mul_f64(jitter))
            .min(retry.max_wait);
        std::thread::sleep(pause);
        wait = wait.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(e: &[&str]) -> Allow {
        Allow::parse(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn private_addresses_only_when_listed() {
        let a = allow(&["*"]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(a.allows("hooks.slack.com", ip("34.1.2.3")));
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "64:ff9b::a00:1",
        ] {
            assert!(!a.allows("x", ip(private)), "{private}");
        }
        let a = allow(&[
            "127.0.0.1",
            "10.1.0.0/16",
            "intranet.local",
            "*.example.com",
        ]);
        assert!(a.allows("127.0.0.1", ip("127.0.0.1")));
        assert!(a.allows("anything", ip("::ffff:127.0.0.1")));
        assert!(!a.allows("localhost", ip("127.0.0.2")));
        assert!(a.allows("x", ip("10.1.200.3")) && !a.allows("x", ip("10.2.0.1")));
        assert!(a.allows("intranet.local", ip("192.168.0.9")));
        assert!(a.allows("a.example.com", ip("93.184.216.34")));
        // a suffix never reaches a private address (a rebinding name under it)
        assert!(!a.allows("evil.example.com", ip("127.0.0.2")));
        assert!(!a.allows("other.org", ip("93.184.216.34")), "not listed");
        assert!(Allow::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(Allow::parse(&["bad host".into()]).is_err());
    }

    #[test]
    fn urls_name_host_and_default_port() {
        assert_eq!(
            host_port("https://hooks.slack.com/x").unwrap(),
            ("hooks.slack.com".into(), 443)
        );
        assert_eq!(host_port("http://h").unwrap(), ("h".into(), 80));
        assert_eq!(host_port("http://[::1]:9/p").unwrap(), ("::1".into(), 9));
        assert_eq!(host_port("https://H:8443?q").unwrap(), ("h".into(), 8443));
        for bad in [
            "ftp://h",
            "http://",
            "http://h:0",
            "http://h:99999",
            "http://u:p@h/",
            "h:80",
        ] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
        let loopback = allow(&["*"]);
        let e = loopback
            .check_url("http://127.0.0.1:19999/internal/admin")
            .unwrap_err();
        assert!(matches!(e, OutboundError::Refused(_)), "{e}");
        assert!(loopback.check_url("http://localhost:1/").is_err());
    }

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let s = signature(b"k", 1_700_000_000, b"{\"a\":1}");
        assert!(s.starts_with("t=1700000000,v1="));
        let tol = Duration::from_secs(300);
        assert!(verify_signature(b"k", &s, b"{\"a\":1}", 1_700_000_100, tol));
        assert!(!verify_signature(
            b"k",
            &s,
            b"{\"a\":2}",
            1_700_000_100,
            tol
        ));
        assert!(!verify_signature(
            b"other",
            &s,
            b"{\"a\":1}",
            1_700_000_100,
            tol
        ));
        assert!(
            !verify_signature(b"k", &s, b"{\"a\":1}", 1_700_001_000, tol),
            "replayed late"
        );
        assert!(!verify_signature(b"k", "garbage", b"", 0, tol));
        // RFC 4231 test case 2 (HMAC-SHA256 of "what do ya want for nothing?" under "Jefe")
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
