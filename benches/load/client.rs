//! One keep-alive HTTP/1.1 connection sending signed signals, each with its own id, one after the other. Requests
//! are formatted by hand; of each answer only the status line, `Content-Length` and `Connection` are read.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpStream;

/// What every connection sends, and until when.
pub struct Plan {
    pub addr: SocketAddr,
    pub path: String,
    pub symbols: Vec<String>,
    pub secret: Vec<u8>,
    /// Base units per signal: small, so a symbol's position swings by one `volume` and margin never runs out.
    pub volume: String,
    /// Starts every signal id, so runs against one journal never reuse an id (a reused one is a `duplicate`).
    pub tag: String,
    pub deadline: Instant,
    /// Stop after this many requests over all connections, even before the deadline.
    pub max_requests: Option<u64>,
    /// Pause between one answer and a connection's next request; `None`: back to back.
    pub interval: Option<Duration>,
}

/// What one connection saw.
#[derive(Default)]
pub struct Tally {
    /// Latency of every 2xx answer, from the first byte written to the last byte read, in microseconds.
    pub ok_micros: Vec<u32>,
    pub statuses: BTreeMap<u16, u64>,
    /// Failed connects, resets and malformed answers; each costs the connection a reconnect.
    pub io_errors: u64,
    /// Reconnects after the server closed the connection on purpose (`Connection: close`).
    pub closed_by_server: u64,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.ok_micros.extend(other.ok_micros);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.io_errors += other.io_errors;
        self.closed_by_server += other.closed_by_server;
    }
}

/// Sends until the plan's deadline or request count; `next` numbers requests over all connections.
pub async fn run(plan: Arc<Plan>, next: Arc<AtomicU64>) -> Tally {
    let mut tally = Tally::default();
    let mut stream: Option<TcpStream> = None;
    let mut body = Vec::with_capacity(256);
    let mut request = Vec::with_capacity(512);
    let mut answer = Vec::with_capacity(1024);
    while Instant::now() < plan.deadline {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if plan.max_requests.is_some_and(|max| n >= max) {
            break;
        }
        let conn = match stream.as_ref() {
            Some(conn) => conn,
            None => match connect(plan.addr).await {
                Ok(conn) => &*stream.insert(conn),
                Err(_) => {
                    tally.io_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        signed_request(&plan, n, &mut body, &mut request);
        let sent = Instant::now();
        match exchange(conn, &request, &mut answer).await {
            Ok(head) => {
                let micros = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
                if (200..300).contains(&head.status) {
                    tally.ok_micros.push(micros);
                }
                *tally.statuses.entry(head.status).or_default() += 1;
                if head.close {
                    tally.closed_by_server += 1;
                    stream = None;
                }
            }
            Err(_) => {
                tally.io_errors += 1;
                stream = None;
            }
        }
        if let Some(pause) = plan.interval {
            tokio::time::sleep(pause).await;
        }
    }
    tally
}

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Request `n`: a plain signal on symbol `n mod S`. Each symbol alternates BUY and SELL in the order they are sent;
/// a SELL closes the long and opens a short, so every signal but a symbol's first makes two fills.
fn signed_request(plan: &Plan, n: u64, body: &mut Vec<u8>, out: &mut Vec<u8>) {
    let count = plan.symbols.len() as u64;
    let symbol = &plan.symbols[(n % count) as usize];
    let side = ["BUY", "SELL"][((n / count) % 2) as usize];
    body.clear();
    write!(
        body,
        r#"{{"symbol":"{symbol}","signal":"{side}","price":"100","timestamp":{},"source":"bench","id":"{}-{n}","volume":"{}"}}"#,
        unix_millis(),
        plan.tag,
        plan.volume,
    )
    .expect("writing to a Vec cannot fail");
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&plan.secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let signature = hex::encode(mac.finalize().into_bytes());
    out.clear();
    write!(
        out,
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         X-Webhook-Signature: sha256={signature}\r\nContent-Length: {}\r\n\r\n",
        plan.path,
        plan.addr,
        body.len(),
    )
    .expect("writing to a Vec cannot fail");
    out.extend_from_slice(body);
}

/// The parts of an answer's head the generator acts on.
struct Head {
    status: u16,
    /// Where the body starts in the read buffer.
    head_len: usize,
    content_length: usize,
    close: bool,
}

/// `GET path` with the bearer `token` on a connection of its own: the status and the body (for the daemon's
/// statistics endpoints on its API listener).
pub async fn get(addr: SocketAddr, path: &str, token: &str) -> io::Result<(u16, Vec<u8>)> {
    let stream = connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let mut buf = Vec::new();
    let head = exchange(&stream, request.as_bytes(), &mut buf).await?;
    let body = buf[head.head_len..head.head_len + head.content_length].to_vec();
    Ok((head.status, body))
}

/// Writes one request and reads its whole answer (head and body) into `buf`.
async fn exchange(stream: &TcpStream, request: &[u8], buf: &mut Vec<u8>) -> io::Result<Head> {
    write_all(stream, request).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    let mut head: Option<Head> = None;
    loop {
        if head.is_none() {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                head = Some(parse_head(&buf[..end], end + 4)?);
            }
        }
        if let Some(h) = head.take() {
            if buf.len() >= h.head_len + h.content_length {
                return Ok(h);
            }
            head = Some(h);
        }
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn parse_head(head: &[u8], head_len: usize) -> io::Result<Head> {
    let malformed = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let text = std::str::from_utf8(head).map_err(|_| malformed("answer head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| malformed("no status line"))?;
    let mut parsed = Head {
        status,
        head_len,
        content_length: 0,
        close: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            parsed.content_length = value.parse().map_err(|_| malformed("bad Content-Length"))?;
        } else if name.eq_ignore_ascii_case("connection") {
            parsed.close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Neither server chunks its answers; reading them is left out on purpose.
            return Err(malformed("chunked answers are not read"));
        }
    }
    Ok(parsed)
}
