//! `cuttle serve`: the browser demo's files (`web/`) over HTTP on 127.0.0.1. WebGPU
//! and ES modules need http://, not file://; this is all the server the page needs, so
//! the demo runs with nothing but this binary and a browser (no network either).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Port on 127.0.0.1 (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The folder to serve (the page and its built wasm in pkg/).
    #[arg(long, default_value = "web")]
    dir: PathBuf,
}

pub fn run(a: ServeArgs) -> Result<(), cuttle::Error> {
    let io = |e: std::io::Error| cuttle::Error::Config(format!("serve: {e}"));
    if !a.dir.join("pkg").join("cuttle.js").is_file() {
        return Err(cuttle::Error::Config(format!(
            "serve: {} has no pkg/cuttle.js; build the wasm first with `bash web/build.sh` (or use `bash web/serve.sh`)",
            a.dir.display()
        )));
    }
    let listener = TcpListener::bind(("127.0.0.1", a.port)).map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    println!("serving {} at http://{addr}/", a.dir.display());
    std::io::stdout().flush().map_err(io)?;
    for stream in listener.incoming().flatten() {
        // One request per connection, answered in turn: the page loads a handful of files.
        if let Err(e) = answer(stream, &a.dir) {
            log::debug!("serve: {e}");
        }
    }
    Ok(())
}

fn answer(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut request = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    reader.read_line(&mut request)?;
    // Drain the headers; nothing in them changes the answer.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let file = match resolve(root, path) {
        Some(f) if method == "GET" || method == "HEAD" => f,
        _ => return respond(&mut stream, "404 Not Found", "text/plain", b"not found\n", method == "HEAD"),
    };
    match std::fs::read(&file) {
        Ok(body) => respond(&mut stream, "200 OK", mime(&file), &body, method == "HEAD"),
        Err(_) => respond(&mut stream, "404 Not Found", "text/plain", b"not found\n", method == "HEAD"),
    }
}

/// The file a URL path names inside `root`, refusing anything that would leave it.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let rel = Path::new(url_path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let p = root.join(rel);
    Some(if p.is_dir() || url_path.ends_with('/') { p.join("index.html") } else { p })
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &[u8], head: bool) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if !head {
        stream.write_all(body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let root = Path::new("web");
        assert_eq!(resolve(root, "/app.js"), Some(root.join("app.js")));
        assert_eq!(resolve(root, "/pkg/cuttle_bg.wasm"), Some(root.join("pkg/cuttle_bg.wasm")));
        assert_eq!(resolve(root, "/../Cargo.toml"), None);
        assert_eq!(resolve(root, "/pkg/../../secret"), None);
        assert_eq!(mime(Path::new("x.wasm")), "application/wasm");
    }
}
