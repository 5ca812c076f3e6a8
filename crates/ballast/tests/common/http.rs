//! Plain HTTP/1.1 exchanges on loopback for the end-to-end tests: one request on a fresh
//! connection, the response read to its length or last chunk, chunked bodies joined.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One response: the status (0 when the exchange failed), its head and its body.
#[derive(Debug, Default)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// How long a test's exchange waits for an answer unless it says otherwise.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// One HTTP/1.1 request on a new connection (`Connection: close`, `Content-Length` of `body`),
/// waiting up to `read_timeout` for the answer.
pub fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    read_timeout: Duration,
) -> Response {
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return Response::default();
    };
    let _ = conn.set_read_timeout(Some(read_timeout));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    if conn.write_all(head.as_bytes()).is_err() {
        return Response::default();
    }
    let raw = read_response(&mut conn);
    let response = String::from_utf8_lossy(&raw).to_string();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let Some((head, rest)) = response.split_once("\r\n\r\n") else {
        return Response {
            status,
            head: response,
            body: String::new(),
        };
    };
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(rest)
    } else {
        rest.to_string()
    };
    Response {
        status,
        head: head.to_string(),
        body,
    }
}

/// [`exchange`] without a body, with the default timeout: the status and the body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let r = exchange(addr, method, path, headers, "", READ_TIMEOUT);
    (r.status, r.body)
}

/// A GET: the status and the body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, &[])
}

/// A `POST` to an admin API with `Authorization: Bearer TOKEN` and no body.
pub fn post_with_token(addr: SocketAddr, path: &str, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    request(addr, "POST", path, &[("Authorization", &auth)])
}

/// One response: up to its Content-Length, or its last chunk, or the connection's end (a
/// peer may keep the connection open after `Connection: close`, so reading to the end alone
/// would wait for the timeout).
fn read_response(conn: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            let body = raw.len() - end - 4;
            if length.is_some_and(|n| body >= n)
                || (head.contains("transfer-encoding: chunked") && raw.ends_with(b"0\r\n\r\n"))
            {
                return raw;
            }
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// A chunked body's chunks joined (Alertmanager's API answers chunked).
pub fn unchunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}
