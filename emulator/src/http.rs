//! A minimal blocking HTTP/1.1 client over `TcpStream`, just enough to ask an emulator
//! whether it answers and to call its control API (`POST /moto-api/reset`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::EmulatorError;

/// Host and port of an `http://host:port` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpTarget {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl HttpTarget {
    /// Parses `http://host:port[/...]`. Only plain HTTP is supported: the emulator
    /// listens on loopback without TLS.
    pub(crate) fn parse(url: &str) -> Result<Self, EmulatorError> {
        let invalid = |reason: &str| EmulatorError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| invalid("it must start with http://"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| invalid("the port is not a number between 1 and 65535"))?;
                (host, port)
            }
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(invalid("it names no host"));
        }
        Ok(Self {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        })
    }

    fn socket_addr(&self) -> Option<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
    }
}

/// Sends one request and returns the status code of the answer.
pub(crate) fn request_status(
    target: &HttpTarget,
    method: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<u16> {
    let addr = target.socket_addr().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("cannot resolve {}:{}", target.host, target.port),
        )
    })?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        target.host, target.port
    );
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::with_capacity(64);
    let mut byte = [0_u8; 1];
    while head.len() < 512 && !head.ends_with(b"\r\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    parse_status_line(&head).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the answer does not start with an HTTP status line",
        )
    })
}

fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_with_and_without_port_and_path() {
        let target = HttpTarget::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!((target.host.as_str(), target.port), ("127.0.0.1", 5000));
        let target = HttpTarget::parse("http://localhost/moto-api").unwrap();
        assert_eq!((target.host.as_str(), target.port), ("localhost", 80));
    }

    #[test]
    fn refuses_https_and_bad_ports_with_a_reason() {
        let err = HttpTarget::parse("https://127.0.0.1:5000").unwrap_err();
        assert!(err.to_string().contains("must start with http://"), "{err}");
        let err = HttpTarget::parse("http://127.0.0.1:notaport").unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn reads_status_codes() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
    }
}
