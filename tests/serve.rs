//! Tests of `cuttle serve` as a client sees it: the real binary on a free port, serving a
//! temporary folder that looks like web/ (a fake pkg/cuttle.js and wasm, plus the things
//! that must not be served: node_modules/, test output, dotfiles, a symbolic link out of
//! the root). Covered: slow and silent clients beside a normal one, an over-long request
//! line (an error status, bounded memory, the server still answering), paths that try to
//! leave the root, the allow-list, MIME types, and GET/HEAD only.
//!
//! Not here: the demo page itself in a browser (web/test.sh does that). Unix only: the
//! tests make symbolic links, and the memory check reads /proc.
#![cfg(unix)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::TempDir;

/// The running server; killed and reaped on drop, so a failing test leaves no process.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The server's resident memory in KiB (Linux), None where /proc is not there.
    fn rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

/// The folder served: `root/` (what the server sees) beside `outside/` (what it must not).
struct Site {
    tmp: TempDir,
}

impl Site {
    fn root(&self) -> PathBuf {
        self.tmp.0.join("root")
    }

    fn outside(&self) -> PathBuf {
        self.tmp.0.join("outside")
    }
}

const INDEX: &str = "<!doctype html><title>fake</title><script type=\"module\" src=\"app.js\"></script>\n";
const WASM: &[u8] = b"\0asm\x01\0\0\0";

fn site(tag: &str) -> Site {
    let site = Site { tmp: TempDir::new(tag) };
    let (root, outside) = (site.root(), site.outside());
    let write = |p: &Path, bytes: &[u8]| {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    };
    write(&root.join("index.html"), INDEX.as_bytes());
    write(&root.join("app.js"), b"import init from './pkg/cuttle.js';\n");
    write(&root.join("style.css"), b"body { margin: 0 }\n");
    write(&root.join("pkg/cuttle.js"), b"export default async function init() {}\n");
    write(&root.join("pkg/cuttle_bg.wasm"), WASM);
    // What the page does not load and the server must not hand out.
    write(&root.join("node_modules/x.js"), b"node module\n");
    write(&root.join("test/out/shot.png"), b"png\n");
    write(&root.join(".env"), b"SECRET=1\n");
    write(&root.join("pkg/.hidden.js"), b"hidden\n");
    write(&root.join("package.json"), b"{}\n");
    write(&root.join("build.sh"), b"#!/bin/sh\n");
    write(&outside.join("secret.js"), b"outside the root\n");
    std::os::unix::fs::symlink(outside.join("secret.js"), root.join("link.js")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("pkg/ext")).unwrap();
    site
}

/// Starts `cuttle serve --port 0 --dir ROOT` and reads the address it prints.
fn serve(root: &Path) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["serve", "--port", "0", "--dir"])
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary runs");
    let mut server = Server { child, addr: "127.0.0.1:0".parse().unwrap() };
    let stdout = server.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).expect("cuttle serve printed its address within 30 s");
    let addr = line
        .trim()
        .strip_prefix(&format!("serving {} at http://", root.display()))
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected first line from cuttle serve: {line:?}"));
    server.addr = addr.parse().unwrap_or_else(|e| panic!("bad address {addr:?}: {e}"));
    server
}

/// A parsed response: status code, headers (names lower-cased), body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` on a fresh connection and reads the whole response (the server closes
/// each connection after its answer). Errors (timeouts included) come back as text.
fn exchange(addr: SocketAddr, raw: &[u8], timeout: Duration) -> Result<Response, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_write_timeout(Some(timeout)).unwrap();
    s.write_all(raw).map_err(|e| format!("write: {e}"))?;
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes).map_err(|e| format!("read (after {} bytes): {e}", bytes.len()))?;
    parse_response(&bytes)
}

fn parse_response(bytes: &[u8]) -> Result<Response, String> {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(bytes)))?;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response { status, headers, body: bytes[end + 4..].to_vec() })
}

fn get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    exchange(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(), Duration::from_secs(5))
}

fn status_of(addr: SocketAddr, path: &str) -> u16 {
    match get(addr, path) {
        Ok(r) => r.status,
        Err(e) => panic!("GET {path}: {e}"),
    }
}

/// A normal GET of the page, which must finish within two seconds.
fn page_loads_quickly(addr: SocketAddr, while_what: &str) {
    let t = Instant::now();
    let r = exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("GET / {while_what}: {e}"));
    assert_eq!(r.status, 200, "GET / {while_what}");
    assert_eq!(r.body, INDEX.as_bytes());
    assert!(t.elapsed() < Duration::from_secs(2), "GET / took {:?} {while_what}", t.elapsed());
}

#[test]
fn slow_clients_do_not_block_others() {
    let site = site("slow");
    // A large file for a client that asks and then never reads: more than the socket
    // buffers hold, so the server's write blocks on it.
    fs::write(site.root().join("pkg/big.wasm"), vec![7u8; 64 << 20]).unwrap();
    let server = serve(&site.root());

    let silent = TcpStream::connect(server.addr).unwrap();
    page_loads_quickly(server.addr, "while a client is connected and silent");

    let mut half = TcpStream::connect(server.addr).unwrap();
    half.write_all(b"GET /index.ht").unwrap();
    page_loads_quickly(server.addr, "while a client has sent half a request line");

    let mut deaf = TcpStream::connect(server.addr).unwrap();
    deaf.write_all(b"GET /pkg/big.wasm HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    page_loads_quickly(server.addr, "while a client does not read its 64 MiB response");

    // Many silent clients at once, then the page again.
    let crowd: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    page_loads_quickly(server.addr, "while 20 more clients are connected and silent");
    drop((silent, half, deaf, crowd));
}

#[test]
fn idle_clients_are_dropped() {
    let site = site("idle");
    let server = serve(&site.root());
    let t = Instant::now();
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    idle.write_all(b"GET / HT").unwrap();
    let mut rest = Vec::new();
    let end = idle.read_to_end(&mut rest);
    assert!(end.is_ok(), "an idle client was not dropped within 20 s: {end:?}");
    assert!(t.elapsed() < Duration::from_secs(15), "an idle client was dropped only after {:?}", t.elapsed());
    if !rest.is_empty() {
        assert_eq!(parse_response(&rest).unwrap().status, 408);
    }
}

#[test]
fn over_long_requests_are_refused_with_bounded_memory() {
    let site = site("long");
    let server = serve(&site.root());

    // A 1 MB request target: an error status, not a read of the whole line.
    let mut raw = b"GET /".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 1 << 20));
    raw.extend(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = exchange(server.addr, &raw, Duration::from_secs(10)).expect("an answer to a 1 MB request line");
    assert!(matches!(r.status, 400 | 414 | 431), "a 1 MB request line got {}", r.status);

    // Headers without end.
    let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..20_000 {
        raw.extend(format!("X-Filler-{i}: {}\r\n", "b".repeat(40)).as_bytes());
    }
    raw.extend(b"\r\n");
    let r = exchange(server.addr, &raw, Duration::from_secs(10)).expect("an answer to 1 MB of headers");
    assert!(matches!(r.status, 400 | 431), "1 MB of headers got {}", r.status);

    // 256 MiB of request line with no end, sent as fast as the server takes it, while
    // the server's memory is watched.
    let baseline = server.rss_kib();
    let mut flood = TcpStream::connect(server.addr).unwrap();
    flood.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1 << 16];
        let mut sent = 0usize;
        let _ = flood.write_all(b"GET /");
        while sent < 256 << 20 {
            match flood.write(&chunk) {
                Ok(k) => sent += k,
                Err(_) => break,
            }
        }
        sent
    });
    let mut peak = baseline.unwrap_or(0);
    while !writer.is_finished() {
        peak = peak.max(server.rss_kib().unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = writer.join().unwrap();
    peak = peak.max(server.rss_kib().unwrap_or(0));
    if let Some(base) = baseline {
        eprintln!("server RSS: {base} KiB before, peak {peak} KiB while {sent} bytes of request line came in");
        assert!(peak < 100 << 10, "server RSS reached {peak} KiB (from {base} KiB) on an endless request line");
    }
    page_loads_quickly(server.addr, "after over-long requests");
}

#[test]
fn nothing_outside_the_root() {
    let site = site("escape");
    let server = serve(&site.root());
    // Symbolic links inside the root that point out of it, to a file and to a folder.
    assert_eq!(status_of(server.addr, "/link.js"), 404, "a symlink to a file outside the root");
    assert_eq!(status_of(server.addr, "/pkg/ext/secret.js"), 404, "a symlinked folder outside the root");
    for path in ["/../outside/secret.js", "/pkg/../../outside/secret.js", "/%2e%2e/outside/secret.js", "/./index.html"]
    {
        let s = status_of(server.addr, path);
        assert!(s == 404 || s == 400, "GET {path} got {s}, expected 404 or 400");
    }
    // Not a path at all.
    let r = exchange(server.addr, b"GET http://elsewhere/ HTTP/1.1\r\n\r\n", Duration::from_secs(5)).unwrap();
    assert!(r.status == 404 || r.status == 400, "an absolute-form target got {}", r.status);
    page_loads_quickly(server.addr, "after the escapes");
}

#[test]
fn only_what_the_page_needs() {
    let site = site("allow");
    let server = serve(&site.root());
    for path in ["/", "/index.html", "/app.js", "/style.css", "/pkg/cuttle.js", "/pkg/cuttle_bg.wasm", "/?preset=test"]
    {
        assert_eq!(status_of(server.addr, path), 200, "GET {path}");
    }
    for path in [
        "/node_modules/x.js",
        "/test/out/shot.png",
        "/.env",
        "/pkg/.hidden.js",
        "/package.json",
        "/build.sh",
        "/pkg/",
        "/pkg",
        "/missing.js",
    ] {
        assert_eq!(status_of(server.addr, path), 404, "GET {path}");
    }
}

#[test]
fn mime_types_and_methods() {
    let site = site("mime");
    let server = serve(&site.root());
    let kind = |path: &str| {
        let r = get(server.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status, 200, "GET {path}");
        r.header("content-type").unwrap_or("").to_string()
    };
    assert_eq!(kind("/pkg/cuttle_bg.wasm"), "application/wasm");
    assert!(kind("/pkg/cuttle.js").starts_with("text/javascript"));
    assert!(kind("/app.js").starts_with("text/javascript"));
    assert!(kind("/style.css").starts_with("text/css"));
    assert!(kind("/").starts_with("text/html"));
    let wasm = get(server.addr, "/pkg/cuttle_bg.wasm").unwrap();
    assert_eq!(wasm.body, WASM);
    assert_eq!(wasm.header("content-length"), Some(WASM.len().to_string().as_str()));

    let head = exchange(server.addr, b"HEAD /app.js HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5)).unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD sent a body");
    assert_eq!(head.header("content-length"), Some("36"));
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let raw = format!("{method} /app.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        let r = exchange(server.addr, raw.as_bytes(), Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }
    let r = exchange(server.addr, b"\x16\x03\x01garbage\r\n\r\n", Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 400, "a request that is not HTTP");
}

#[test]
fn a_folder_without_the_built_wasm_is_refused() {
    let tmp = TempDir::new("nopkg");
    let out = Command::new(env!("CARGO_BIN_EXE_cuttle"))
        .args(["serve", "--port", "0", "--dir"])
        .arg(&tmp.0)
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pkg/cuttle.js") && !stderr.contains("panicked"), "{stderr}");
}
