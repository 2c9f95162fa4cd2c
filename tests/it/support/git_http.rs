//! A private git server on loopback: `git http-backend` run as a CGI
//! program behind a small HTTP/1.1 server that answers 401 unless a
//! request carries HTTP Basic credentials whose password is the token the
//! test chose (the user name is not checked, as on the big hosts). Every
//! request gets its own connection (`Connection: close`).
//!
//! While it serves an authenticated fetch, git's client is mid-clone: the
//! server takes the host's process list then, so a test can look for the
//! token in every process's arguments at the moment it was in use.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Requests answered 401 (no credentials, or the wrong password).
    pub refused: usize,
    /// Requests handed to `git http-backend`.
    pub served: usize,
    /// `ps -eww -o args` taken while an authenticated fetch was served.
    pub process_lists: Vec<String>,
}

pub struct PrivateGitServer {
    pub addr: SocketAddr,
    base: PathBuf,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PrivateGitServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

struct Shared {
    base: PathBuf,
    token: String,
    seen: Arc<Mutex<Seen>>,
}

impl PrivateGitServer {
    /// Serves `{base}/*.git` to whoever presents `token` as their password.
    pub async fn start(token: &str) -> PrivateGitServer {
        let base = PathBuf::from(format!(
            "/tmp/kgh-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&base).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Arc::new(Shared {
            base: base.clone(),
            token: token.to_string(),
            seen: seen.clone(),
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &shared).await;
                });
            }
        });
        PrivateGitServer {
            addr,
            base,
            seen,
            task,
        }
    }

    /// A repository `name.git` like [`super::git::GitServer::repository`]'s.
    pub fn repository(&self, name: &str) -> String {
        super::git::make_repository(&self.base, name);
        self.url(name)
    }

    /// The `http://` URL of `name.git`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.addr)
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

/// One request on `stream`, answered, then the connection closed.
async fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let Some((head, mut body)) = read_head(&mut stream).await? else {
        return Ok(());
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut parts = request_line.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        body = read_chunked(&mut stream, body).await?;
    } else {
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        while body.len() < length {
            let mut buf = vec![0u8; length - body.len()];
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
    }

    let user = headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (user, password) = pair.split_once(':')?;
            (password == shared.token).then(|| user.to_string())
        });
    let Some(user) = user else {
        shared.seen.lock().unwrap().refused += 1;
        let text = "authentication required\n";
        let answer = format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"kiln-test\"\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        stream.write_all(answer.as_bytes()).await?;
        return stream.shutdown().await;
    };

    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    if method == "POST" && path.ends_with("/git-upload-pack") {
        // git's client is waiting on this answer, mid-clone.
        let ps = tokio::process::Command::new("ps")
            .args(["-eww", "-o", "args="])
            .output()
            .await?;
        shared
            .seen
            .lock()
            .unwrap()
            .process_lists
            .push(String::from_utf8_lossy(&ps.stdout).into_owned());
    }
    shared.seen.lock().unwrap().served += 1;
    let mut cgi = tokio::process::Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &shared.base)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", &user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(v) = headers.get(header) {
            cgi.env(var, v);
        }
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let feed = async move {
        let _ = stdin.write_all(&body).await;
    };
    let (_, out) = tokio::join!(feed, child.wait_with_output());
    let out = out?.stdout;

    // CGI answer: headers (a `Status:` among them), a blank line, the body.
    let split = find(&out, b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| find(&out, b"\n\n").map(|i| (i, 2)));
    let (cgi_head, cgi_body) = match split {
        Some((i, n)) => (
            String::from_utf8_lossy(&out[..i]).into_owned(),
            &out[i + n..],
        ),
        None => (String::new(), &out[..]),
    };
    let mut status = "200 OK".to_string();
    let mut answer_headers = String::new();
    for line in cgi_head.lines().map(str::trim_end) {
        match line.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => {
                answer_headers.push_str(line);
                answer_headers.push_str("\r\n");
            }
            None => {}
        }
    }
    let head = format!(
        "HTTP/1.1 {status}\r\n{answer_headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        cgi_body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(cgi_body).await?;
    stream.shutdown().await
}

/// The request's head (up to the blank line) and whatever of its body came
/// with it; `None` when the client closed first.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).into_owned();
            return Ok(Some((head, buf[i + 4..].to_vec())));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A chunked body, decoded; `start` is what arrived with the head.
async fn read_chunked(stream: &mut TcpStream, start: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut raw = start;
    let mut chunk = [0u8; 8192];
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        // A size line, then that many bytes and a CRLF; size 0 ends it.
        let Some(eol) = find(&raw[at..], b"\r\n") else {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(body);
            }
            raw.extend_from_slice(&chunk[..n]);
            continue;
        };
        let size_text = String::from_utf8_lossy(&raw[at..at + eol]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| std::io::Error::other(format!("bad chunk size {size_text:?}: {e}")))?;
        let data = at + eol + 2;
        if size == 0 {
            return Ok(body);
        }
        while raw.len() < data + size + 2 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(body);
            }
            raw.extend_from_slice(&chunk[..n]);
        }
        body.extend_from_slice(&raw[data..data + size]);
        at = data + size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
