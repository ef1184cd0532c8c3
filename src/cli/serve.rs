//! `cuttle serve`: the browser demo's files (`web/`) over HTTP on 127.0.0.1. WebGPU
//! and ES modules need http://, not file://; this is all the server the page needs, so
//! the demo runs with nothing but this binary and a browser (no network either).
//!
//! What this is: a static file server for exactly what the page loads (an allow-list:
//! `index.html`, the page's own scripts, styles and images at the top of the folder, and
//! the wasm-bindgen output in `pkg/`), GET and HEAD only, one request per connection,
//! each connection on its own thread. Requests are parsed by `httparse` (hyper's parser);
//! the limits around it are ours: the request head must fit in 8 KiB and arrive within
//! 5 s, the target is at most 4 KiB, a response that the client stops reading is dropped,
//! and at most 64 connections are open at once. A path is served only when its
//! canonical form lies under the canonical root, so a symbolic link out of the folder is
//! a 404 like a missing file.
//!
//! What this is not: a general web server (no directory listings, ranges, keep-alive,
//! compression or TLS), nor one to expose beyond this machine: it binds 127.0.0.1 only.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The folder to serve (the page and its built wasm in pkg/).
    #[arg(long, default_value = "web")]
    dir: PathBuf,
}

/// The request line and headers together; a browser's are well under 2 KiB.
const MAX_HEAD: usize = 8 << 10;
/// The request target (path and query); ours are a few dozen bytes.
const MAX_TARGET: usize = 4 << 10;
const MAX_HEADERS: usize = 64;
/// The whole request head must arrive within this, so a silent or trickling client is
/// dropped instead of holding its thread.
const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// A client that takes no bytes for this long is dropped, and so is one still reading
/// its response after `RESPONSE_DEADLINE` (the wasm is a few MB on a local socket).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_DEADLINE: Duration = Duration::from_secs(60);
/// After answering, what the client had sent beyond the head is read and dropped (at
/// most this much, for at most `LINGER`) before closing: closing a socket with unread
/// input sends a reset, which can destroy the response before the client reads it
/// (a refused over-long request would then look like a network error).
const DRAIN_MAX: u64 = 4 << 20;
const LINGER: Duration = Duration::from_secs(2);
/// Connections served at once; past this a client gets a 503 at once. Each costs a
/// thread; the page needs about five.
const MAX_CONNECTIONS: usize = 64;

pub fn run(a: ServeArgs) -> Result<(), cuttle::Error> {
    let io = |e: std::io::Error| cuttle::Error::Config(format!("serve: {e}"));
    if !a.dir.join("pkg").join("cuttle.js").is_file() {
        return Err(cuttle::Error::Config(format!(
            "serve: {} has no pkg/cuttle.js; build the wasm first with `bash web/build.sh` (or use `bash web/serve.sh`)",
            a.dir.display()
        )));
    }
    let root = a
        .dir
        .canonicalize()
        .map_err(|e| cuttle::Error::Config(format!("serve: cannot resolve {}: {e}", a.dir.display())))?;
    let root = Arc::new(root);
    let listener = TcpListener::bind(("127.0.0.1", a.port)).map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    println!("serving {} at http://{addr}/", a.dir.display());
    std::io::stdout().flush().map_err(io)?;
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to close rather
                // than spin on the error.
                log::debug!("serve: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            busy(stream);
            continue;
        }
        let slot = Slot(open.clone());
        let root = root.clone();
        let spawned = std::thread::Builder::new().name("serve-connection".into()).spawn(move || {
            let _slot = slot;
            if let Err(e) = connection(stream, &root) {
                log::debug!("serve: {e}");
            }
        });
        if let Err(e) = spawned {
            // The closure (and with it the stream and the slot) is dropped.
            log::debug!("serve: cannot start a thread: {e}");
        }
    }
    Ok(())
}

/// One of the `MAX_CONNECTIONS`, given back when the connection's thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers a connection over the limit without a thread; a fresh socket's send buffer
/// takes the few bytes without blocking.
fn busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = write_head(&mut stream, 503, "text/plain; charset=utf-8", 5, &[]);
    let _ = stream.write_all(b"busy\n");
}

/// What the client gets when its request is refused before any file is looked at.
#[derive(Debug, PartialEq)]
struct Refusal(u16);

/// The method and target of a complete, acceptable request head.
#[derive(Debug, PartialEq)]
struct Head {
    method: String,
    target: String,
}

fn connection(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let head = match read_head(&mut stream)? {
        Some(Ok(head)) => head,
        Some(Err(Refusal(code))) => {
            error(&mut stream, code, false)?;
            return linger(stream);
        }
        None => return Ok(()),
    };
    let is_head = head.method == "HEAD";
    if head.method != "GET" && !is_head {
        error(&mut stream, 405, false)?;
        return linger(stream);
    }
    match file_for(root, &head.target) {
        Ok(path) => send_file(&mut stream, &path, is_head)?,
        Err(Refusal(code)) => error(&mut stream, code, is_head)?,
    }
    linger(stream)
}

/// Reads until the request head is complete. `None`: the client closed or went silent
/// before sending anything, so there is no one to answer.
fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Result<Head, Refusal>>> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((len > 0).then_some(Err(Refusal(408))));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[len..]) {
            Ok(0) => return Ok((len > 0).then_some(Err(Refusal(400)))),
            Ok(k) => len += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Ok((len > 0).then_some(Err(Refusal(408))));
            }
            Err(e) => return Err(e),
        }
        if let Some(answer) = parse_head(&buf[..len]) {
            return Ok(Some(answer));
        }
        if len == buf.len() {
            // No end of the head in MAX_HEAD bytes: the request line itself is too long
            // when it has not ended either, else the headers are.
            let line_ended = buf.contains(&b'\n');
            return Ok(Some(Err(Refusal(if line_ended { 431 } else { 414 }))));
        }
    }
}

/// The head in `bytes` once it is complete (`None` while it is not), or why it is refused.
fn parse_head(bytes: &[u8]) -> Option<Result<Head, Refusal>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(httparse::Status::Partial) => None,
        Ok(httparse::Status::Complete(_)) => {
            let (Some(method), Some(target)) = (req.method, req.path) else {
                return Some(Err(Refusal(400)));
            };
            if target.len() > MAX_TARGET {
                return Some(Err(Refusal(414)));
            }
            Some(Ok(Head { method: method.to_string(), target: target.to_string() }))
        }
        Err(httparse::Error::TooManyHeaders) => Some(Err(Refusal(431))),
        Err(_) => Some(Err(Refusal(400))),
    }
}

/// The file a request target names, if the allow-list lets it out and it lies under
/// `root` (canonical) once every symbolic link is followed.
fn file_for(root: &Path, target: &str) -> Result<PathBuf, Refusal> {
    // Only origin-form targets ("/path?query"); the query is the page's own business.
    if !target.starts_with('/') {
        return Err(Refusal(400));
    }
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let decoded = percent_decode(path).ok_or(Refusal(400))?;
    let mut rel = decoded.trim_start_matches('/').to_string();
    if rel.is_empty() || rel.ends_with('/') {
        rel.push_str("index.html");
    }
    let segments: Vec<&str> = rel.split('/').collect();
    if !allowed(&segments) {
        return Err(Refusal(404));
    }
    let real = root.join(&rel).canonicalize().map_err(|_| Refusal(404))?;
    // The real file must be under the root and allowed itself: a link inside the root
    // to node_modules/ or to a folder outside is refused like the file it points at.
    let inside = real.strip_prefix(root).map_err(|_| Refusal(404))?;
    let real_segments: Option<Vec<&str>> = inside.components().map(|c| c.as_os_str().to_str()).collect();
    match real_segments {
        Some(s) if allowed(&s) && real.is_file() => Ok(real),
        _ => Err(Refusal(404)),
    }
}

/// The allow-list: what the demo page loads. At the top of the folder, `index.html` and
/// the page's own scripts, styles and images (not the build and test scripts, README or
/// package.json beside them); in `pkg/`, wasm-bindgen's output (scripts, snippets and
/// the wasm). Never a dotfile, a `..` or an empty segment, so node_modules/, test/ and
/// anything else in other folders stays unserved.
fn allowed(segments: &[&str]) -> bool {
    let plain = |s: &&str| {
        !s.is_empty()
            && !s.starts_with('.')
            && !s.contains('\\')
            && !s.contains('\0')
            && matches!(Path::new(s).components().collect::<Vec<_>>()[..], [Component::Normal(_)])
    };
    if !segments.iter().all(plain) {
        return false;
    }
    let ext = |name: &str| Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match segments {
        [name] => *name == "index.html" || matches!(ext(name).as_str(), "js" | "mjs" | "css" | "png" | "svg" | "ico"),
        ["pkg", .., name] => matches!(ext(name).as_str(), "js" | "mjs" | "wasm"),
        _ => false,
    }
}

/// `%XX` escapes decoded; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The Content-Type of a file by its extension (json and txt too, though the allow-list
/// lets neither out today).
fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "txt" => "text/plain; charset=utf-8",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn write_head(stream: &mut TcpStream, code: u16, kind: &str, len: u64, extra: &[&str]) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {kind}\r\nContent-Length: {len}\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        reason(code)
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

fn error(stream: &mut TcpStream, code: u16, is_head: bool) -> std::io::Result<()> {
    let body = format!("{code} {}\n", reason(code).to_ascii_lowercase());
    let allow: &[&str] = if code == 405 { &["Allow: GET, HEAD"] } else { &[] };
    write_head(stream, code, "text/plain; charset=utf-8", body.len() as u64, allow)?;
    if !is_head {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

/// Streams the file (never whole in memory: many clients may be fetching the wasm at
/// once), giving up on a client still reading after `RESPONSE_DEADLINE`.
fn send_file(stream: &mut TcpStream, path: &Path, is_head: bool) -> std::io::Result<()> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return error(stream, 404, is_head);
    };
    let len = file.metadata()?.len();
    write_head(stream, 200, mime(path), len, &[])?;
    if is_head {
        return stream.flush();
    }
    let deadline = Instant::now() + RESPONSE_DEADLINE;
    let mut buf = vec![0u8; 64 << 10];
    let mut file = (&mut file).take(len);
    loop {
        let k = file.read(&mut buf)?;
        if k == 0 {
            return stream.flush();
        }
        if Instant::now() > deadline {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client too slow to read the response"));
        }
        stream.write_all(&buf[..k])?;
    }
}

/// Ends the answer, then reads and drops what else the client sent before closing (see
/// `DRAIN_MAX`).
fn linger(mut stream: TcpStream) -> std::io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 8 << 10];
    let mut drained = 0u64;
    while drained < DRAIN_MAX {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => drained += k as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_is_what_the_page_loads() {
        let ok = |p: &str| allowed(&p.split('/').collect::<Vec<_>>());
        for p in ["index.html", "app.js", "style.css", "pkg/cuttle.js", "pkg/cuttle_bg.wasm", "pkg/snippets/a/b.js"] {
            assert!(ok(p), "{p}");
        }
        for p in [
            "node_modules/x.js",
            "test/out/shot.png",
            ".env",
            "pkg/.hidden.js",
            "..",
            "../x.js",
            "pkg/../app.js",
            "./app.js",
            "pkg//cuttle.js",
            "package.json",
            "README.md",
            "build.sh",
            "other.html",
            "pkg/package.json",
            "pkg",
            "a\\..\\b.js",
        ] {
            assert!(!ok(p), "{p}");
        }
    }

    #[test]
    fn heads_parse_or_are_refused() {
        let head = |m: &str, t: &str| Some(Ok(Head { method: m.into(), target: t.into() }));
        assert_eq!(parse_head(b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n"), head("GET", "/app.js"));
        assert_eq!(parse_head(b"HEAD / HTTP/1.0\r\n\r\n"), head("HEAD", "/"));
        assert_eq!(parse_head(b"GET /app.js HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(parse_head(b"GET /app"), None);
        assert_eq!(parse_head(b"\x16\x03\x01\x02\r\n\r\n"), Some(Err(Refusal(400))));
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET));
        assert_eq!(parse_head(long.as_bytes()), Some(Err(Refusal(414))));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(parse_head(many.as_bytes()), Some(Err(Refusal(431))));
    }

    #[test]
    fn percent_escapes_decode_strictly() {
        assert_eq!(percent_decode("/a%20b.js").as_deref(), Some("/a b.js"));
        assert_eq!(percent_decode("/%2e%2e/x").as_deref(), Some("/../x"));
        assert_eq!(percent_decode("/%zz"), None);
        assert_eq!(percent_decode("/%2"), None);
        assert_eq!(percent_decode("/%ff"), None);
    }

    #[test]
    fn mime_types() {
        assert_eq!(mime(Path::new("x.wasm")), "application/wasm");
        assert_eq!(mime(Path::new("a/x.mjs")), "text/javascript; charset=utf-8");
        assert_eq!(mime(Path::new("index.html")), "text/html; charset=utf-8");
        assert_eq!(mime(Path::new("x.ico")), "image/x-icon");
        assert_eq!(mime(Path::new("x")), "application/octet-stream");
    }
}
