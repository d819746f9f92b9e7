//! `imggo emulator` as scripts use it: the first stdout line names the address, the server
//! answers there, SIGTERM stops it cleanly with the final stats on stderr.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn http(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn first_line_names_the_address_and_sigterm_stops_it() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imggo"))
        .args([
            "emulator",
            "--addr",
            "127.0.0.1:0",
            "--api-key",
            "k1",
            "--seed",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imggo emulator");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line was {line:?}"))
        .to_owned();

    let ok = http(
        &addr,
        "GET /api/_health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        ok.to_ascii_lowercase().contains("x-request-id: req_"),
        "{ok}"
    );
    let denied = http(
        &addr,
        "GET /api/patterns HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nConnection: close\r\n\r\n",
    );
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    let allowed = http(
        &addr,
        "GET /api/patterns HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k1\r\nConnection: close\r\n\r\n",
    );
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let stats: serde_json::Value = serde_json::from_str(stderr.trim()).expect("stats JSON");
    assert_eq!(stats["requests_total"], 3);
    assert_eq!(stats["requests"]["GET /api/patterns"]["401"], 1);
    assert_eq!(stats["connections_accepted"], 3);
}

#[test]
fn a_bad_flag_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_imggo"))
        .args(["emulator", "--latency", "uniform:9-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("latency"));
}
