//! `imggo optimize` end to end: real corpus files, names, JSON lines and exit codes.

use std::process::Command;

fn imggo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imggo"))
}

#[test]
fn optimizes_a_directory_with_deterministic_names_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir_all(inputs.join("sub")).unwrap();
    let corpus = |name: &str| std::fs::read(imggo_testkit::corpus_file(name)).unwrap();
    // Same stem three times (one in a subdirectory), a PNG named .jpg, a broken file.
    std::fs::write(inputs.join("a.jpg"), corpus("car-plate1.jpg")).unwrap();
    std::fs::write(inputs.join("a.png"), corpus("resume4.png")).unwrap();
    std::fs::write(inputs.join("sub/a.jpg"), corpus("inventory1.jpg")).unwrap();
    std::fs::write(inputs.join("b.jpg"), corpus("prescription1.jpg")).unwrap();
    std::fs::write(inputs.join("c.jpg"), b"not an image").unwrap();
    let out = dir.path().join("out");
    let run = imggo()
        .args(["optimize", "--json", "--jobs", "2", "--out"])
        .arg(&out)
        .arg(&inputs)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "one input is broken");
    let stdout = String::from_utf8(run.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let field = |i: usize, k: &str| lines[i][k].clone();
    // Input order: a.jpg, a.png, b.jpg, c.jpg, sub/a.jpg.
    let names: Vec<String> = lines
        .iter()
        .map(|l| {
            l["output"]
                .as_str()
                .map(|p| p.rsplit('/').next().unwrap().to_string())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(names, ["a.jpg", "a-2.jpg", "b.jpg", "", "a-3.jpg"]);
    assert_eq!(field(0, "action"), "stripped");
    assert_eq!(field(1, "action"), "converted");
    assert_eq!(field(2, "format"), "png");
    assert_eq!(field(4, "action"), "resized");
    assert_eq!(
        (field(4, "out_width"), field(4, "out_height")),
        (1536.into(), 2048.into())
    );
    assert!(field(3, "error").as_str().unwrap().contains("unsupported"));
    assert!(field(3, "output").is_null() && field(0, "error").is_null());
    for key in [
        "input",
        "output",
        "action",
        "format",
        "in_bytes",
        "out_bytes",
        "in_width",
        "in_height",
        "out_width",
        "out_height",
        "error",
    ] {
        assert!(lines.iter().all(|l| l.get(key).is_some()), "{key} missing");
    }
    assert_eq!(lines[0].as_object().unwrap().len(), 11);
    // The written files are what the lines say.
    for l in lines.iter().filter(|l| l["error"].is_null()) {
        let len = std::fs::metadata(l["output"].as_str().unwrap())
            .unwrap()
            .len();
        assert_eq!(serde_json::Value::from(len), l["out_bytes"]);
    }
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert!(stderr.contains("c.jpg: unsupported image"), "{stderr}");
}

#[test]
fn summary_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let run = imggo()
        .args(["optimize", "--out"])
        .arg(dir.path())
        .arg(imggo_testkit::corpus_file("vin5.jpg"))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0));
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert!(
        stdout.starts_with("1 files (1 optimized, 0 failed)"),
        "{stdout}"
    );
    assert!(stdout.contains("images/s") && stdout.contains("MP/s"));
    for bad in [
        &["--quality", "0"][..],
        &["--max-side", "0"],
        &["--jobs", "0"],
    ] {
        let run = imggo()
            .args(["optimize", "--out"])
            .arg(dir.path())
            .args(bad)
            .arg(imggo_testkit::corpus_file("vin5.jpg"))
            .output()
            .unwrap();
        assert_eq!(run.status.code(), Some(2), "{bad:?}");
    }
}
