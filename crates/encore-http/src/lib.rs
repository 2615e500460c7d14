//! A minimal blocking HTTP/1.1 client over `std::net`, for encore's own tools (the ingest load
//! generator), end-to-end tests, alert webhooks and OpenAI-compatible judges. One request per
//! connection or keep-alive; plain `http://` only (no TLS), no redirects, no chunked request
//! bodies; responses with a `Content-Length`, chunked, or delimited by the connection's close.

pub mod outbound;
#[cfg(feature = "testing")]
pub mod testing;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A response: status, headers (lower-cased names), body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An `http://host[:port][/base path]` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port`
    pub authority: String,
    /// the base path, without a trailing `/` (empty for the root)
    pub base: String,
}

impl Url {
    /// Parses `http://host[:port][/path]`; `https://` is refused with a reason, since this
    /// client does not speak TLS.
    pub fn parse(url: &str) -> Result<Url, encore_core::Invalid> {
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.starts_with("https://") {
            return Err(encore_core::Invalid(format!(
                "{url}: https is not supported by encore's HTTP client; reach the endpoint \
                 through a local plain-http proxy (for example LiteLLM) or a local server"
            )));
        } else {
            return Err(encore_core::Invalid(format!(
                "{url}: expected an address starting with http://"
            )));
        };
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(encore_core::Invalid(format!("{url}: no host")));
        }
        let authority = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        Ok(Url {
            authority,
            base: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The request path of `path` under this address's base.
    pub fn path(&self, path: &str) -> String {
        if path.is_empty() {
            if self.base.is_empty() {
                "/".into()
            } else {
                self.base.clone()
            }
        } else {
            format!("{}{path}", self.base)
        }
    }
}

/// A keep-alive connection to one server.
#[derive(Debug)]
pub struct Connection {
    reader: BufReader<TcpStream>,
    host: String,
    /// `Authorization: Bearer ...` sent with every request, when set
    bearer: Option<String>,
}

impl Connection {
    pub fn open(addr: &str) -> std::io::Result<Connection> {
        Connection::open_timeout(addr, Duration::from_secs(60))
    }

    /// Connects within `timeout`; reads and writes then time out after `timeout` too.
    pub fn open_timeout(addr: &str, timeout: Duration) -> std::io::Result<Connection> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    stream.set_nodelay(true)?;
                    return Ok(Connection {
                        reader: BufReader::new(stream),
                        host: addr.to_owned(),
                        bearer: None,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("{addr}: no address"))
        }))
    }

    /// Sends `Authorization: Bearer KEY` with every request (an encore API key).
    pub fn with_key(mut self, key: Option<&str>) -> Connection {
        self.bearer = key.filter(|k| !k.is_empty()).map(|k| format!("Bearer {k}"));
        self
    }

    /// Sends one JSON request and reads its response.
    pub fn request(&mut self, method: &str, path: &str, body: &[u8]) -> std::io::Result<Response> {
        self.send(method, path, &[], body)
    }

    /// Sends one request with extra `headers` (a JSON content type unless given) and reads its
    /// response.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let stream = self.reader.get_mut();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(b) = &self.bearer
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            head.push_str(&format!("Authorization: {b}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        self.read_response()
    }

    fn read_response(&mut self) -> std::io::Result<Response> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(bad("headers cut short"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let mut buf = Vec::new();
        if let Some(len) = find("content-length") {
            let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
            buf.resize(len, 0);
            self.reader.read_exact(&mut buf)?;
        } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = line.trim().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
                if size == 0 {
                    // trailers, up to the empty line
                    loop {
                        line.clear();
                        if self.reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let at = buf.len();
                buf.resize(at + size, 0);
                self.reader.read_exact(&mut buf[at..])?;
                line.clear();
                self.reader.read_line(&mut line)?;
            }
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
        } else {
            self.reader.read_to_end(&mut buf)?;
        }
        Ok(Response {
            status,
            headers,
            body: String::from_utf8_lossy(&buf).into_owned(),
        })
    }
}

/// One request on a fresh connection.
pub fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<Response> {
    Connection::open(addr)?.request(method, path, body)
}

/// One request to `url` + `path` on a fresh connection, with `headers`, giving up after
/// `timeout` (connecting, sending, and each wait for data).
pub fn send(
    url: &Url,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Response> {
    Connection::open_timeout(&url.authority, timeout)?.send(method, &url.path(path), headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_ports_and_base_paths() {
        let u = Url::parse("http://127.0.0.1:8080/v1/").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.path("/chat/completions"), "/v1/chat/completions");
        let u = Url::parse("http://localhost").unwrap();
        assert_eq!(u.authority, "localhost:80");
        assert_eq!(u.path(""), "/");
        assert!(
            Url::parse("https://api.example.com")
                .unwrap_err()
                .0
                .contains("https")
        );
        assert!(Url::parse("ftp://x").is_err());
    }

    #[test]
    fn chunked_and_close_delimited_bodies_are_read() {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            for reply in [
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
            ] {
                let (mut s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                s.write_all(reply.as_bytes()).unwrap();
            }
        });
        assert_eq!(request(&addr, "GET", "/", b"").unwrap().body, "hello world");
        assert_eq!(
            request(&addr, "GET", "/", b"").unwrap().body,
            "until the end"
        );
        server.join().unwrap();
    }
}
