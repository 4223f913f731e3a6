//! `lgss serve` over loopback, with real clients (curl and Python
//! `requests`): its answers are `lgss segment`'s, its limits answer with
//! their statuses, and it drains on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{fixtures, lgss, python, tempdir, trained_small};

/// A running `lgss serve`, killed when dropped; its stderr is kept.
pub(crate) struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    pub(crate) fn start(onnx: &Path, extra: &[&str]) -> Server {
        let mut child = lgss()
            .args([
                "serve",
                "--runtime",
                "tract",
                "--listen",
                "127.0.0.1:0",
                "--model",
            ])
            .arg(onnx)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lgss serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("lgss serve exited before listening").unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Server { child, addr, log }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "lgss serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` a request: (status, body).
pub(crate) fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let split = out.stdout.iter().rposition(|&b| b == b'\n').unwrap();
    let status = std::str::from_utf8(&out.stdout[split + 1..])
        .unwrap()
        .parse()
        .unwrap();
    (status, out.stdout[..split].to_vec())
}

fn post(server: &Server, query: &str, file: &Path) -> (u16, Vec<u8>) {
    let body = format!("@{}", file.display());
    curl(&[
        "--data-binary",
        &body,
        &server.url(&format!("/v1/segment{query}")),
    ])
}

/// `lgss segment` of one file with `flags`: its stdout.
fn segment_cli(onnx: &Path, file: &Path, flags: &[&str]) -> Vec<u8> {
    let out = lgss()
        .args(["segment", "--runtime", "tract", "--model"])
        .arg(onnx)
        .args(flags)
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// JSON outputs without `file` (the input path on the CLI, the request id
/// in the server).
fn without_file(bytes: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    v.as_object_mut().unwrap().remove("file");
    v
}

fn movies(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pkl"))
        .collect();
    files.sort();
    files
}

#[test]
fn serve_answers_as_segment_does_and_outlives_bad_input() {
    let dir = tempdir("serve");
    let (data, _ck, onnx) = trained_small(&dir, 5, 61, (40, 120), 1);
    let files = movies(&data);
    let server = Server::start(&onnx, &["--read-timeout", "1", "--batch", "4"]);

    // Every format and rule, with options, as `segment` writes it.
    let cases: [(&str, &[&str]); 6] = [
        ("", &[]),
        ("?rule=local", &["--local"]),
        (
            "?format=csv&threshold=0.4",
            &["--format", "csv", "--threshold", "0.4"],
        ),
        ("?format=webvtt&fps=25", &["--format", "webvtt", "--fps", "25"]),
        (
            "?format=edl&coherence=0.5&length_weight=0",
            &["--format", "edl", "--coherence", "0.5", "--length-weight", "0"],
        ),
        (
            "?format=otio&rule=local&threshold=0.6",
            &["--format", "otio", "--local", "--threshold", "0.6"],
        ),
    ];
    for (query, flags) in cases {
        let (status, body) = post(&server, query, &files[0]);
        assert_eq!(status, 200, "{query}: {}", String::from_utf8_lossy(&body));
        let want = segment_cli(&onnx, &files[0], flags);
        if query.is_empty() || query.starts_with("?rule") {
            assert_eq!(without_file(&body), without_file(&want), "{query}");
        } else {
            assert_eq!(
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(&want),
                "{query}"
            );
        }
    }

    // Each `?format=` answer, read back by the tools users read it with
    // (tests/read_back_scenes.py), holds the JSON answer's scenes.
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    for (format, ext) in [
        ("json", "json"),
        ("csv", "csv"),
        ("webvtt", "vtt"),
        ("edl", "edl"),
        ("otio", "otio"),
    ] {
        let (status, body) = post(
            &server,
            &format!("?format={format}&fps=29.97&threshold=0.4"),
            &files[0],
        );
        assert_eq!(status, 200, "{format}: {}", String::from_utf8_lossy(&body));
        std::fs::write(served.join(format!("movie.{ext}")), body).unwrap();
    }
    let counts = crate::common::read_back_scenes(&[format!("29.97,global,{}", served.display())]);
    for ext in ["csv", "vtt", "edl", "otio"] {
        assert_eq!(counts[ext], 1, "{counts}");
    }
    // Python `requests`, all movies at once from threads (batched across
    // requests by the runtime thread): each answer is `segment`'s.
    let want: Vec<serde_json::Value> = files
        .iter()
        .map(|f| without_file(&segment_cli(&onnx, f, &[])))
        .collect();
    let script = r#"
import json, sys, requests
from concurrent.futures import ThreadPoolExecutor
url, files = sys.argv[1], sys.argv[2:]
def one(f):
    with open(f, "rb") as fh:
        r = requests.post(url, data=fh.read(), timeout=60)
    assert r.status_code == 200, (f, r.status_code, r.text)
    assert r.headers["x-request-id"], r.headers
    d = r.json(); d.pop("file")
    return d
with ThreadPoolExecutor(len(files)) as ex:
    print(json.dumps(list(ex.map(one, files * 2))))
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(server.url("/v1/segment"))
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g, &want[i % files.len()], "movie {i}");
    }

    // Malformed files, and what the fuzzer found: 400, and the server goes on.
    let bad = fixtures().join("bad");
    let mut n_bad = 0;
    for f in std::fs::read_dir(&bad).unwrap().map(|e| e.unwrap().path()) {
        if f.extension().is_none_or(|e| e != "pkl") {
            continue;
        }
        let (status, body) = post(&server, "", &f);
        assert_eq!(status, 400, "{}: {}", f.display(), String::from_utf8_lossy(&body));
        let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            err["error"].as_str().unwrap().starts_with("not a valid movie"),
            "{err}"
        );
        n_bad += 1;
        assert_eq!(post(&server, "", &files[1]).0, 200, "after {}", f.display());
    }
    assert!(n_bad >= 10, "{n_bad} malformed fixtures");
    // Shapes the pickle fuzzer produces: nothing, noise, a frame claiming
    // 2^62 bytes, 100,000 nested marks, a global call with a payload.
    let canary = dir.join("canary");
    let call = format!("cposix\nsystem\n(S'touch {}'\ntR.", canary.display());
    let mut nested = vec![0x80, 2];
    nested.extend(std::iter::repeat_n(b'(', 100_000));
    nested.push(b'.');
    let shapes: [&[u8]; 5] = [
        b"",
        b"\x00\x01garbage\xff",
        b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x40",
        &nested,
        call.as_bytes(),
    ];
    for (i, shape) in shapes.iter().enumerate() {
        let f = dir.join(format!("shape{i}.pkl"));
        std::fs::write(&f, shape).unwrap();
        let (status, body) = post(&server, "", &f);
        assert_eq!(status, 400, "shape {i}: {}", String::from_utf8_lossy(&body));
        n_bad += 1;
        assert_eq!(post(&server, "", &files[1]).0, 200, "after shape {i}");
    }
    assert!(!canary.exists(), "a pickle ran code");
    // Bad options: 400 with the reason, before the body is read.
    for q in [
        "?rule=nearest",
        "?threshold=1.5",
        "?fps=-1",
        "?rule=local&coherence=1",
        "?format=mp4",
        "?unknown=1",
        // An EDL counts timecode at broadcast rates only.
        "?format=edl&fps=12.5",
    ] {
        let (status, body) = post(&server, q, &files[0]);
        assert_eq!(status, 400, "{q}: {}", String::from_utf8_lossy(&body));
        if q.contains("edl") {
            assert!(
                String::from_utf8_lossy(&body).contains("29.97"),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    // 413 from the declared length alone; 408 for an upload that stalls.
    let (status, _) = curl(&[
        "-H",
        "Content-Length: 999999999999",
        "--data-binary",
        "x",
        &server.url("/v1/segment"),
    ]);
    assert_eq!(status, 413);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n\x80\x02")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    // Headers that never end (slowloris): the connection is closed, with no
    // answer, once --read-timeout (1 s here) has passed, well before the
    // client's own 20 s.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let t0 = Instant::now();
    let mut reply = Vec::new();
    let read = s.read_to_end(&mut reply);
    assert!(read.is_ok() && reply.is_empty(), "{read:?} {reply:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "closed after {:?}",
        t0.elapsed()
    );
    assert_eq!(post(&server, "", &files[2]).0, 200);

    // The model as served, and the counters.
    let (status, body) = curl(&[&server.url("/v1/model")]);
    assert_eq!(status, 200);
    let model: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(model["runtime"], "tract");
    assert_eq!(model["sha256"], lgss::manifest::sha256_file(&onnx).unwrap());
    assert_eq!(model["default_rule"], "global");
    let (_, metrics) = curl(&[&server.url("/metrics")]);
    let metrics = String::from_utf8(metrics).unwrap();
    let count = |status: u16| -> u64 {
        let key = format!("lgss_requests_total{{route=\"/v1/segment\",status=\"{status}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    // Seven refusals of options; five formats read back.
    assert_eq!(count(400), n_bad + 7, "{metrics}");
    assert_eq!(
        count(200),
        (cases.len() + 5 + 2 * files.len()) as u64 + n_bad + 1,
        "{metrics}"
    );
    assert!(metrics.contains("lgss_windows_total"), "{metrics}");
    assert!(metrics.contains("lgss_batch_sequences_bucket"), "{metrics}");
    assert_eq!(curl(&[&server.url("/healthz")]).0, 200);
    assert_eq!(curl(&[&server.url("/readyz")]).0, 200);
}

#[test]
fn a_token_guards_v1_routes_and_is_never_logged() {
    let dir = tempdir("serve-token");
    let (data, _ck, onnx) = trained_small(&dir, 3, 62, (30, 60), 1);
    let token = "s3cret-token-7f1c";
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let server = Server::start(&onnx, &["--token-file", token_file.to_str().unwrap()]);
    let movie = &movies(&data)[0];
    let body = format!("@{}", movie.display());
    let url = server.url("/v1/segment");
    let good = format!("Authorization: Bearer {token}");
    for header in ["", "Authorization: Bearer wrong", "Authorization: Basic czNjcmV0"] {
        let mut args = vec!["--data-binary", &body, &url];
        if !header.is_empty() {
            args.extend(["-H", header]);
        }
        assert_eq!(curl(&args).0, 401, "{header}");
    }
    assert_eq!(curl(&[&server.url("/v1/model")]).0, 401);
    assert_eq!(curl(&["-H", &good, "--data-binary", &body, &url]).0, 200);
    assert_eq!(curl(&["-H", &good, &server.url("/v1/model")]).0, 200);
    // Probes and metrics stay open to the kubelet and Prometheus.
    assert_eq!(curl(&[&server.url("/healthz")]).0, 200);
    assert_eq!(curl(&[&server.url("/metrics")]).0, 200);
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log();
    assert!(log.contains("POST /v1/segment 401"), "{log}");
    assert!(!log.contains(token), "the token is in the log:\n{log}");
}

/// Python's `http.client` sends a whole body before it reads the answer and
/// reuses its connection: a refusal decided before the body is read must
/// still reach it (not a broken pipe) and leave the connection usable.
const KEEP_ALIVE_CLIENT: &str = r#"
import http.client, json, sys
host, port = sys.argv[1].rsplit(":", 1)
conn = http.client.HTTPConnection(host, int(port), timeout=60)
for size in (1000, 4 << 20, 4 << 20):
    conn.request("POST", "/v1/segment", body=b"\x80" * size)
    r = conn.getresponse()
    body = json.loads(r.read())
    assert r.status == 503 and r.getheader("Retry-After") == "1" and body["status"] == 503, (size, r.status, body)
    assert r.getheader("Connection") != "close", size
print("ok")
"#;

#[test]
fn a_refusal_reaches_a_client_still_sending_its_body() {
    let dir = tempdir("serve-refuse");
    let (data, _ck, onnx) = trained_small(&dir, 2, 64, (30, 60), 1);
    let server = Server::start(&onnx, &["--max-uploads", "1", "--read-timeout", "30"]);
    // A stalled upload holds the only upload slot (until it is dropped).
    let mut held = TcpStream::connect(server.addr).unwrap();
    held.write_all(b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n\x80\x02")
        .unwrap();
    let t0 = Instant::now();
    while curl(&["--data-binary", "x", &server.url("/v1/segment")]).0 != 503 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the stalled upload never took the slot"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let addr = server.addr.to_string();
    let out = crate::common::run_python(KEEP_ALIVE_CLIENT, &[Path::new(&addr)]);
    assert_eq!(out.trim(), "ok");
    // With `Expect: 100-continue` the refusal comes before the body is sent.
    let big = dir.join("big.bin");
    std::fs::write(&big, vec![0x80u8; 4 << 20]).unwrap();
    let (status, _) = curl(&[
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &format!("@{}", big.display()),
        &server.url("/v1/segment"),
    ]);
    assert_eq!(status, 503);
    // The slot comes back once the stalled upload hangs up.
    drop(held);
    let movie = &movies(&data)[0];
    let t0 = Instant::now();
    while post(&server, "", movie).0 != 200 {
        assert!(t0.elapsed() < Duration::from_secs(20), "the slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_in_a_burst_completes_or_refuses_every_request_cleanly() {
    let dir = tempdir("serve-drain");
    let (data, _ck, onnx) = trained_small(&dir, 3, 63, (300, 400), 1);
    let mut server = Server::start(&onnx, &["--batch", "2"]);
    let files = movies(&data);
    let want = without_file(&segment_cli(&onnx, &files[0], &[]));
    // 24 clients, each posting the movie until it is refused; SIGTERM while
    // they run. Every exchange must end in a whole 200 (equal to
    // `segment`'s), a 503, or a refused connection: never a cut response.
    let script = r#"
import json, sys, time, threading, requests
url, path = sys.argv[1], sys.argv[2]
body = open(path, "rb").read()
results, lock = [], threading.Lock()
def client():
    while True:
        try:
            r = requests.post(url, data=body, timeout=60)
        except requests.exceptions.ConnectionError as e:
            # Refused (the listener is closed) or closed before any byte of
            # a response; a response cut short raises another error.
            with lock: results.append(("refused", str(e)[:200]))
            return
        except Exception as e:
            with lock: results.append(("error", repr(e)[:300]))
            return
        with lock:
            results.append((r.status_code, r.text if r.status_code == 200 else ""))
        if r.status_code != 200:
            return
threads = [threading.Thread(target=client) for _ in range(24)]
for t in threads: t.start()
time.sleep(1.0)
print("burst", flush=True)
for t in threads: t.join()
print(json.dumps(results))
"#;
    let mut client = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(server.url("/v1/segment"))
        .arg(&files[0])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "burst");
    let status = server.terminate();
    assert!(
        status.success(),
        "lgss serve exited with {status}:\n{}",
        server.log()
    );
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let done = client.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let results: Vec<(serde_json::Value, String)> = serde_json::from_str(rest.trim()).unwrap();
    let mut completed = 0;
    for (status, text) in &results {
        match status {
            serde_json::Value::Number(n) if n.as_u64() == Some(200) => {
                assert_eq!(without_file(text.as_bytes()), want);
                completed += 1;
            }
            serde_json::Value::Number(n) => assert_eq!(n.as_u64(), Some(503), "{results:?}"),
            serde_json::Value::String(s) => assert_eq!(s, "refused", "{results:?}"),
            other => panic!("{other}"),
        }
    }
    assert!(completed > 0, "nothing completed: {results:?}");
    // The signal came while requests were in flight, and they finished.
    let log = server.log();
    let after = log
        .split("lgss serve: stopping")
        .nth(1)
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        after.contains("POST /v1/segment 200"),
        "no request drained:\n{log}"
    );
    assert!(log.contains("lgss serve: stopped"), "{log}");
}

/// The Kubernetes example parses, uses only flags `lgss serve` has, probes
/// the health routes on the port it listens on, reads its token from a
/// mounted Secret and drains within the grace period.
#[test]
fn the_kubernetes_serve_example_is_consistent() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/k8s-serve.yaml");
    let parsed = crate::common::run_python(
        "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        &[&path],
    );
    let docs: Vec<serde_json::Value> = serde_json::from_str(&parsed).unwrap();
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let service = docs.iter().find(|d| d["kind"] == "Service").expect("a Service");
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "serve");
    let help = lgss().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let flag = |name: &str| -> Option<&str> { args.iter().find_map(|a| a.strip_prefix(&format!("{name}="))) };
    for a in &args[1..] {
        let name = a.split('=').next().unwrap();
        assert!(
            help.lines()
                .any(|l| l.trim_start().split([' ', ',']).any(|w| w == name)),
            "lgss serve has no {name}"
        );
    }
    // Probes on the routes, on the named port the server listens on.
    let port: u64 = flag("--listen")
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(port));
    // A restricted admission policy's security context.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], c["ports"][0]["name"], "{probe}");
    }
    assert_eq!(service["spec"]["ports"][0]["targetPort"], c["ports"][0]["name"]);
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    // The token file lies in a volume mounted from a Secret.
    let token = flag("--token-file").expect("a token");
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| token.starts_with(m["mountPath"].as_str().unwrap()))
        .expect("the token file's volume is mounted");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert!(volume["secret"]["secretName"].is_string(), "{volume}");
    // Secret files belong to root: the non-root server reads the token
    // through its group (fsGroup) and the mode's group-read bit.
    let mode = volume["secret"]["defaultMode"].as_u64().unwrap();
    assert_eq!(
        pod["securityContext"]["fsGroup"],
        pod["securityContext"]["runAsGroup"]
    );
    assert!(mode & 0o040 != 0 && mode & 0o007 == 0, "token mode {mode:o}");
    // Draining ends inside the grace period.
    let drain: f64 = flag("--drain-timeout").unwrap().parse().unwrap();
    assert!(drain < pod["terminationGracePeriodSeconds"].as_f64().unwrap());
}
