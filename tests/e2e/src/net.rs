//! Real sockets on 127.0.0.1 for the end-to-end suite: a small HTTP/1.1 client, an upstream that
//! records what it received and misbehaves on request, and a JWKS server that can rotate keys
//! and go down. HTTP/1.1 with `Connection: close` only: enough to drive a gateway, small enough
//! to read.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An HTTP answer as the client saw it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// In arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A request as an upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request to `addr` (`host:port`) and reads the whole answer.
pub fn request(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut all = headers.to_vec();
    let length = body.len().to_string();
    if !body.is_empty() || method == "POST" || method == "PUT" {
        all.push(("content-length", &length));
    }
    let mut wire = head_wire(addr, method, target, &all);
    wire.extend_from_slice(body);
    send_raw(addr, &wire, method == "HEAD")
}

/// A request head on the wire ([`latin1`]), `Connection: close`, ending with its blank line.
fn head_wire(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    latin1(&head)
}

/// Sends `wire` as it is (a whole request, framing included, which the caller may make
/// ambiguous on purpose) and reads the answer; `head` says the request was a HEAD.
pub fn send_raw(addr: &str, wire: &[u8], head: bool) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(wire)?;
    let mut r = BufReader::new(s);
    let (status, headers) = read_status(&mut r)?;
    let body = read_body(&mut r, &headers, head || status == 304)?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("malformed HTTP: {what:?}"),
    )
}

/// An answer's status and headers.
fn read_status(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let (status_line, headers) = read_head(r)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(&status_line))?;
    Ok((status, headers))
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut first = Vec::new();
    if r.read_until(b'\n', &mut first)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a request line",
        ));
    }
    let mut headers = Vec::new();
    loop {
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line)?;
        let line = from_latin1(&line);
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (n, v) = line.split_once(':').ok_or_else(|| bad(line))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok((from_latin1(&first).trim_end().to_string(), headers))
}

/// HTTP head text as it goes on the wire: each character one byte, so a test writes the byte
/// 0xE9 as `'\u{e9}'` (the way a JS `Headers` holds it). A character above U+00FF cannot be sent.
pub fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(c).unwrap_or_else(|_| panic!("{c:?} is not one byte: {text:?}")))
        .collect()
}

/// The head text of bytes from the wire, each byte the character with its number.
pub fn from_latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn read_body(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    none: bool,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    read_body_with(r, headers, none, |piece| body.extend_from_slice(piece))?;
    Ok(body)
}

/// Reads a message body in its framing (chunked, a declared length, or to the connection's end),
/// handing each piece to `each` as it comes, so a large one is never held whole. A body that
/// ends before its declared length or its last chunk is an error.
fn read_body_with(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    none: bool,
    mut each: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if none {
        return Ok(());
    }
    let mut buf = vec![0; 256 * 1024];
    let mut exactly = |r: &mut dyn BufRead, mut n: u64, each: &mut dyn FnMut(&[u8])| {
        while n > 0 {
            let want = (n as usize).min(buf.len());
            r.read_exact(&mut buf[..want])?;
            each(&buf[..want]);
            n -= want as u64;
        }
        std::io::Result::Ok(())
    };
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad(&size))?;
            if n == 0 {
                let mut end = String::new();
                r.read_line(&mut end)?;
                return Ok(());
            }
            exactly(r, n, &mut each)?;
            let mut crlf = [0; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = get("content-length") {
        let n: u64 = len.parse().map_err(|_| bad(&len))?;
        exactly(r, n, &mut each)
    } else {
        let mut rest = Vec::new();
        r.read_to_end(&mut rest)?;
        each(&rest);
        Ok(())
    }
}

/// The upstream: answers every request with a JSON echo of what it received, and records it.
/// Path segments script it: `/status/NNN` answers NNN, `/slow/MS` waits first, `/reset` closes
/// the connection without answering, `/cookie` adds a `Set-Cookie`, `/etag` an `ETag`, `/vary`
/// a `Vary: Accept-Language`, `/sie` a `Cache-Control: max-age=1, stale-if-error=60`, `/swr`
/// a `Cache-Control: max-age=1, stale-while-revalidate=60`,
/// `/fails-after/N` 503 for the target's requests after its first N, `/tag/T` a `Cache-Tag: T`,
/// `/private` a `Cache-Control: private`, `/latin1` the headers `X-Utf8` (UTF-8 `café`) and
/// `X-Latin` (the same with the single byte 0xE9); anything else gets `Cache-Control: max-age=60`.
/// `/bytes/N` answers a body of N `x`s instead of the echo, sent chunked (no `Content-Length`)
/// when the path also has `/chunked`; with `/short` it declares N bytes, sends half of them and
/// closes the connection.
pub struct Upstream {
    /// Where it listens (`127.0.0.1:PORT`).
    pub addr: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// `/slow/` requests whose caller closed the connection before the answer was due (a
    /// gateway that gave up and aborted its fetch): the target, and how long after the request
    /// arrived the caller hung up, in milliseconds.
    pub abandoned: Arc<Mutex<Vec<(String, u64)>>>,
}

impl Upstream {
    /// Starts on `addr` (`127.0.0.1:0`: a port the OS picks, in [`Upstream::addr`]).
    pub fn start(addr: &str) -> Upstream {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().expect("a bound address").to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let abandoned = Arc::new(Mutex::new(Vec::new()));
        let (rec, gone) = (received.clone(), abandoned.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (rec, gone) = (rec.clone(), gone.clone());
                std::thread::spawn(move || {
                    let _ = serve_upstream(conn, &rec, &gone);
                });
            }
        });
        Upstream {
            addr,
            received,
            abandoned,
        }
    }

    /// Requests whose target contains `marker`, in arrival order.
    pub fn requests_for(&self, marker: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.target.contains(marker))
            .cloned()
            .collect()
    }
}

/// How long the suite's collector holds an export marked `collector-hangs`: three times the
/// collector upstream's `timeout_ms` (tests/e2e/gateway.toml).
pub const COLLECTOR_HANGS: Duration = Duration::from_secs(3);

fn serve_upstream(
    conn: TcpStream,
    rec: &Mutex<Vec<Received>>,
    abandoned: &Mutex<Vec<(String, u64)>>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let (line, headers) = read_head(&mut r)?;
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let framed = headers
        .iter()
        .any(|(n, _)| n == "content-length" || n == "transfer-encoding");
    if target.contains("/sink") {
        // an upload's length and checksum, read as it comes and answered instead of the echo
        let (mut length, mut fnv) = (0u64, FNV_START);
        read_body_with(&mut r, &headers, !framed, |piece| {
            length += piece.len() as u64;
            fnv = fnv1a_from(fnv, piece);
        })?;
        let digest = json!({"length": length, "fnv": fnv}).to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            digest.len()
        );
        let mut conn = conn;
        conn.write_all(head.as_bytes())?;
        conn.write_all(digest.as_bytes())?;
        return conn.flush();
    }
    let body = read_body(&mut r, &headers, !framed)?;
    let upgrade = headers
        .iter()
        .any(|(n, v)| n == "upgrade" && v.eq_ignore_ascii_case("websocket"));
    if upgrade && target.contains("/ws/") {
        return serve_websocket(conn, &headers);
    }
    let got = Received {
        method,
        target: target.clone(),
        headers,
        body,
    };
    rec.lock().unwrap().push(got.clone());
    let segs: Vec<&str> = target.split('?').next().unwrap_or("").split('/').collect();
    let after = |name: &str| {
        segs.iter()
            .position(|s| *s == name)
            .and_then(|i| segs.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let mut conn = conn;
    if let Some(ms) = after("slow") {
        // wait, watching the connection: the request has been read whole, so the only thing
        // that can arrive is the caller hanging up
        let since = std::time::Instant::now();
        conn.set_read_timeout(Some(Duration::from_millis(ms.max(1))))?;
        if let Ok(0) = conn.read(&mut [0u8; 1]) {
            let waited = since.elapsed().as_millis() as u64;
            abandoned.lock().unwrap().push((target, waited));
            return Ok(());
        }
    }
    if segs.contains(&"reset") {
        return conn.shutdown(Shutdown::Both);
    }
    let mut status = after("status").unwrap_or(200);
    if target.starts_with("/otlp/") {
        // the collector: a marker in an export (a span's `url.path` carries the request's path)
        // makes it hang past the gateway's timeout for it, or refuse
        let has = |marker: &[u8]| got.body.windows(marker.len()).any(|w| w == marker);
        if has(b"collector-hangs") {
            std::thread::sleep(COLLECTOR_HANGS);
        }
        if has(b"collector-refuses") {
            status = 503;
        }
    }
    if let Some(n) = after("fails-after") {
        // the target's first `n` requests succeed, the ones after answer 503
        let seen = rec
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.target == target)
            .count();
        if seen as u64 > n {
            status = 503;
        }
    }
    let mut extra = String::new();
    if segs.contains(&"cookie") {
        extra.push_str("set-cookie: session=abc; Path=/\r\n");
    }
    if segs.contains(&"latin1") {
        // UTF-8 "é", and the single byte 0xE9
        extra.push_str("x-utf8: caf\u{c3}\u{a9}\r\nx-latin: caf\u{e9}\r\n");
    }
    if segs.contains(&"etag") {
        extra.push_str("etag: \"v1\"\r\n");
    }
    if segs.contains(&"vary") {
        extra.push_str("vary: Accept-Language\r\n");
    }
    if let Some(tag) = segs
        .iter()
        .position(|s| *s == "tag")
        .and_then(|i| segs.get(i + 1))
    {
        extra.push_str(&format!("cache-tag: {tag}\r\n"));
    }
    extra.push_str(if segs.contains(&"private") {
        "cache-control: private\r\n"
    } else if segs.contains(&"sie") {
        "cache-control: max-age=1, stale-if-error=60\r\n"
    } else if segs.contains(&"swr") {
        "cache-control: max-age=1, stale-while-revalidate=60\r\n"
    } else {
        "cache-control: max-age=60\r\n"
    });
    if let (Some(n), Some(ms)) = (after("sse"), after("every")) {
        // `n` events `ms` apart, each sent as its own chunk, the time of each recorded
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")?;
        for i in 0..n {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(ms));
            }
            let event = format!("id: {i}\ndata: event {i}\n\n");
            conn.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())?;
            conn.flush()?;
            sent_at(&target, std::time::Instant::now());
        }
        conn.write_all(b"0\r\n\r\n")?;
        return conn.flush();
    }
    if let Some(ms) = after("idle") {
        // a chunk, then nothing for `ms`, then another and the end
        conn.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nfirst\r\n")?;
        conn.flush()?;
        std::thread::sleep(Duration::from_millis(ms));
        conn.write_all(b"4\r\nlate\r\n0\r\n\r\n")?;
        return conn.flush();
    }
    if let Some(n) = after("big") {
        // `n` bytes of [`pattern`], with their length declared, 64 KiB at a time
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n");
        conn.write_all(head.as_bytes())?;
        let mut at = 0u64;
        while at < n {
            let len = (n - at).min(65_536);
            conn.write_all(&pattern(at, len as usize))?;
            at += len;
        }
        return conn.flush();
    }
    if let Some(n) = after("bytes") {
        let body = vec![b'x'; usize::try_from(n).unwrap_or(0)];
        if segs.contains(&"chunked") {
            conn.write_all(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
            )?;
            for chunk in body.chunks(1000) {
                conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
                conn.write_all(chunk)?;
                conn.write_all(b"\r\n")?;
            }
            conn.write_all(b"0\r\n\r\n")?;
        } else {
            let head =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\nconnection: close\r\n\r\n");
            conn.write_all(head.as_bytes())?;
            if segs.contains(&"short") {
                conn.write_all(&body[..body.len() / 2])?;
                conn.flush()?;
                return conn.shutdown(Shutdown::Both);
            }
            conn.write_all(&body)?;
        }
        return conn.flush();
    }
    let echo = json!({
        "method": got.method,
        "target": got.target,
        "headers": got.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
        "body": String::from_utf8_lossy(&got.body),
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\nserver: upstream/1\r\n{extra}connection: close\r\n\r\n",
        echo.len()
    );
    conn.write_all(&latin1(&head))?;
    conn.write_all(echo.as_bytes())?;
    conn.flush()
}

/// A WebSocket upstream (RFC 6455, tungstenite's framing): accepts the handshake, says
/// `hello from upstream`, then echoes every text and binary message until the peer closes.
fn serve_websocket(conn: TcpStream, headers: &[(String, String)]) -> std::io::Result<()> {
    let key = headers
        .iter()
        .find(|(n, _)| n == "sec-websocket-key")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut conn = conn;
    conn.write_all(
        format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n")
            .as_bytes(),
    )?;
    let mut ws =
        tungstenite::WebSocket::from_raw_socket(conn, tungstenite::protocol::Role::Server, None);
    let failed = |e: tungstenite::Error| std::io::Error::other(e.to_string());
    ws.send(tungstenite::Message::text("hello from upstream"))
        .map_err(failed)?;
    loop {
        match ws.read() {
            Ok(m) if m.is_text() || m.is_binary() => ws.send(m).map_err(failed)?,
            Ok(tungstenite::Message::Close(_)) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

/// When the upstream sent each event of each `/sse/` answer, by target.
static SSE_SENT: Mutex<Vec<(String, std::time::Instant)>> = Mutex::new(Vec::new());

fn sent_at(target: &str, at: std::time::Instant) {
    SSE_SENT.lock().unwrap().push((target.to_string(), at));
}

/// When the upstream sent the events of the `/sse/` answer to `target`, in order.
pub fn sse_sent(target: &str) -> Vec<std::time::Instant> {
    let all = SSE_SENT.lock().unwrap();
    all.iter()
        .filter(|(t, _)| t == target)
        .map(|(_, at)| *at)
        .collect()
}

/// The bytes at `offset..offset + len` of the endless pattern `/big/` answers with: not
/// repeating at any short period, so a chunk lost, doubled or swapped changes the checksum.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// FNV-1a's starting state.
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// The checksum of the first `len` bytes of [`pattern`], computed a megabyte at a time.
pub fn pattern_fnv(len: u64) -> u64 {
    let (mut sum, mut at) = (FNV_START, 0);
    while at < len {
        let n = (len - at).min(1 << 20);
        sum = fnv1a_from(sum, &pattern(at, n as usize));
        at += n;
    }
    sum
}

/// FNV-1a, 64 bits (the suite's checksum of large bodies), continued from `state` ([`FNV_START`]
/// for a body's first piece), so a body can be checked in pieces.
pub fn fnv1a_from(mut state: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        state ^= u64::from(*b);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    state
}

/// The JWKS server: `GET /jwks.json` answers the current document with `max-age=60`, or 503
/// while it is down.
#[derive(Clone)]
pub struct JwksServer {
    /// Where it listens (`127.0.0.1:PORT`).
    pub addr: String,
    doc: Arc<Mutex<Option<Value>>>,
    pub hits: Arc<Mutex<u32>>,
}

impl JwksServer {
    pub fn start(addr: &str, doc: Value) -> JwksServer {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let me = JwksServer {
            addr: listener.local_addr().expect("a bound address").to_string(),
            doc: Arc::new(Mutex::new(Some(doc))),
            hits: Arc::new(Mutex::new(0)),
        };
        let server = me.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || {
                    let _ = server.serve(conn);
                });
            }
        });
        me
    }

    /// Serves `doc` from now on (a key rotation).
    pub fn set(&self, doc: Value) {
        *self.doc.lock().unwrap() = Some(doc);
    }

    /// Answers 503 from now on (an outage).
    pub fn down(&self) {
        *self.doc.lock().unwrap() = None;
    }

    fn serve(&self, mut conn: TcpStream) -> std::io::Result<()> {
        let mut r = BufReader::new(conn.try_clone()?);
        read_head(&mut r)?;
        *self.hits.lock().unwrap() += 1;
        let (status, body) = match &*self.doc.lock().unwrap() {
            Some(doc) => ("200 OK", doc.to_string()),
            None => ("503 Service Unavailable", "down".to_string()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: max-age=60\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes())?;
        conn.write_all(body.as_bytes())
    }
}

/// A response read as it arrives: the status, the head's headers, each read's bytes with the
/// moment they came (the body still in its wire framing), and whether the connection ended
/// cleanly rather than with an error (a reset).
#[derive(Debug)]
pub struct Arrivals {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub reads: Vec<(std::time::Instant, Vec<u8>)>,
    pub clean_end: bool,
}

impl Arrivals {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// When `needle` had arrived whole.
    pub fn arrived(&self, needle: &str) -> Option<std::time::Instant> {
        let mut seen = Vec::new();
        for (at, bytes) in &self.reads {
            seen.extend_from_slice(bytes);
            if seen.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return Some(*at);
            }
        }
        None
    }

    /// Everything after the head, in its wire framing.
    pub fn raw_body(&self) -> Vec<u8> {
        self.reads
            .iter()
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    }
}

/// Sends a GET and records the answer as it arrives, until the connection ends or `limit` passes.
pub fn watch(
    addr: &str,
    target: &str,
    headers: &[(&str, &str)],
    limit: Duration,
) -> std::io::Result<Arrivals> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(limit))?;
    s.write_all(&head_wire(addr, "GET", target, headers))?;
    let mut r = BufReader::new(s);
    let (status, headers) = read_status(&mut r)?;
    let mut reads = Vec::new();
    let buffered = r.buffer().to_vec();
    if !buffered.is_empty() {
        reads.push((std::time::Instant::now(), buffered));
    }
    let mut s = r.into_inner();
    let mut buf = vec![0; 64 * 1024];
    let clean_end = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => reads.push((std::time::Instant::now(), buf[..n].to_vec())),
            Err(_) => break false,
        }
    };
    Ok(Arrivals {
        status,
        headers,
        reads,
        clean_end,
    })
}

/// A large body's download: the status, the declared length, how many body bytes came, their
/// checksum ([`fnv1a_from`]), without holding them.
pub fn download(
    addr: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, Option<u64>, u64, u64)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.write_all(&head_wire(addr, "GET", target, headers))?;
    let mut r = BufReader::with_capacity(256 * 1024, s);
    let (status, headers) = read_status(&mut r)?;
    let declared = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    let (mut len, mut sum) = (0u64, FNV_START);
    read_body_with(&mut r, &headers, false, |piece| {
        len += piece.len() as u64;
        sum = fnv1a_from(sum, piece);
    })?;
    Ok((status, declared, len, sum))
}

/// Uploads `total` bytes of [`pattern`] with `method`, with their length declared or chunked, 64
/// KiB at a time, and reads the answer.
pub fn upload(
    addr: &str,
    method: &str,
    target: &str,
    total: u64,
    chunked: bool,
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let length = total.to_string();
    let framing = if chunked {
        ("transfer-encoding", "chunked")
    } else {
        ("content-length", length.as_str())
    };
    s.write_all(&head_wire(addr, method, target, &[framing]))?;
    // the body goes from another thread while this one waits for the answer: a gateway may
    // answer (413) and close before the whole body is sent, and a client that read only after
    // sending would lose that answer whenever the reset its next write provokes came first
    // (the kernel drops what the client had not read); a write error is then not the test's
    // failure, the answer is what counts
    let mut writer = s.try_clone()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut at = 0u64;
        while at < total {
            let len = (total - at).min(65_536);
            let piece = pattern(at, len as usize);
            if chunked {
                writer.write_all(format!("{len:x}\r\n").as_bytes())?;
                writer.write_all(&piece)?;
                writer.write_all(b"\r\n")?;
            } else {
                writer.write_all(&piece)?;
            }
            at += len;
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n")?;
        }
        Ok(())
    });
    let mut r = BufReader::new(s.try_clone()?);
    let answer = read_status(&mut r).and_then(|(status, headers)| {
        let body = read_body(&mut r, &headers, false)?;
        Ok((status, headers, body))
    });
    // a sender still writing to a gateway that stopped reading stops here
    let _ = s.shutdown(Shutdown::Both);
    let _ = sender.join();
    let (status, headers, body) = answer?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}
