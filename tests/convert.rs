//! `spawnd convert xinetd|inetd`, run as a real binary on the corpus in
//! tests/corpus/convert/ and compared with the golden files beside each
//! input: `INPUT.out.yaml` (stdout) and `INPUT.stderr`.
//!
//! To regenerate the golden files after a deliberate change:
//!
//! ```text
//! SPAWND_BLESS=1 cargo test --test convert
//! ```
//!
//! Blessing writes the files and then fails the run on purpose: read the
//! diff (`git diff tests/corpus/convert`) before committing, and run the
//! tests again without SPAWND_BLESS.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One conversion of the corpus.
struct Case {
    /// Golden files are `{golden}.out.yaml` and `{golden}.stderr`.
    golden: &'static str,
    kind: &'static str,
    args: &'static [&'static str],
    status: i32,
}

const fn case(
    golden: &'static str,
    kind: &'static str,
    args: &'static [&'static str],
    status: i32,
) -> Case {
    Case {
        golden,
        kind,
        args,
        status,
    }
}

const CASES: &[Case] = &[
    case("xinetd/rsync", "xinetd", &["xinetd/rsync"], 0),
    case("xinetd/tftp", "xinetd", &["xinetd/tftp"], 0),
    case("xinetd/cvspserver", "xinetd", &["xinetd/cvspserver"], 0),
    case("xinetd/echo", "xinetd", &["xinetd/echo"], 0),
    case("xinetd/daytime", "xinetd", &["xinetd/daytime"], 0),
    case("xinetd/time", "xinetd", &["xinetd/time"], 0),
    case("xinetd/chargen", "xinetd", &["xinetd/chargen"], 0),
    case("xinetd/discard", "xinetd", &["xinetd/discard"], 0),
    case("xinetd/ctf-pwn", "xinetd", &["xinetd/ctf-pwn"], 0),
    case("xinetd/check_mk", "xinetd", &["xinetd/check_mk"], 0),
    case("xinetd/nrpe", "xinetd", &["xinetd/nrpe"], 0),
    case("xinetd/ssh-redirect", "xinetd", &["xinetd/ssh-redirect"], 0),
    case("xinetd/plusminus", "xinetd", &["xinetd/plusminus"], 0),
    case("xinetd/unknown-attr", "xinetd", &["xinetd/unknown-attr"], 0),
    case("xinetd/legacy", "xinetd", &["xinetd/legacy"], 0),
    case(
        "xinetd/rpc-and-friends",
        "xinetd",
        &["xinetd/rpc-and-friends"],
        0,
    ),
    case("xinetd/syntax-error", "xinetd", &["xinetd/syntax-error"], 1),
    case(
        "xinetd/fedora/xinetd.conf",
        "xinetd",
        &["xinetd/fedora/xinetd.conf"],
        0,
    ),
    case(
        "xinetd/fedora/xinetd.d",
        "xinetd",
        &["xinetd/fedora/xinetd.d"],
        0,
    ),
    // The main file and the directory it includes, both named: each file is
    // read once.
    case(
        "xinetd/fedora/both",
        "xinetd",
        &["xinetd/fedora/xinetd.conf", "xinetd/fedora/xinetd.d"],
        0,
    ),
    case(
        "inetd/debian-openbsd-inetd.conf",
        "inetd",
        &["inetd/debian-openbsd-inetd.conf"],
        0,
    ),
    case(
        "inetd/hosts-and-limits.conf",
        "inetd",
        &["inetd/hosts-and-limits.conf"],
        0,
    ),
    case("inetd/broken.conf", "inetd", &["inetd/broken.conf"], 1),
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/convert")
}

/// Runs spawnd in the corpus directory (so paths in messages are short and
/// stable) with the corpus's own /etc/services.
fn spawnd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spawnd"))
        .args(args)
        .current_dir(corpus())
        .env("SPAWND_SERVICES_FILE", "services")
        .env_remove("RUST_LOG")
        .env_remove("SPAWND_CONFIG_DIR")
        .output()
        .expect("run spawnd")
}

fn convert(case: &Case, extra: &[&str]) -> Output {
    let mut args = vec!["convert", case.kind];
    args.extend(case.args);
    args.extend(extra);
    spawnd(&args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh, empty directory under Cargo's per-test temp dir.
fn temp_dir(label: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "convert-{}-{n}-{}",
        std::process::id(),
        label.replace('/', "_")
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn blessing() -> bool {
    std::env::var_os("SPAWND_BLESS").is_some_and(|v| v != "0" && !v.is_empty())
}

/// The first difference between two texts, with a little context.
fn diff(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let at = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let from = at.saturating_sub(3);
    let mut out = format!("first difference at line {}:\n", at + 1);
    for (i, line) in e.iter().enumerate().skip(from).take(8) {
        out.push_str(&format!("  expected {:>4}: {line}\n", i + 1));
    }
    for (i, line) in a.iter().enumerate().skip(from).take(8) {
        out.push_str(&format!("  actual   {:>4}: {line}\n", i + 1));
    }
    out
}

/// Compares `actual` with the golden file, or writes it when blessing.
/// Returns a complaint, if any.
fn check_golden(path: &Path, actual: &str) -> Option<String> {
    if blessing() {
        if actual.is_empty() {
            let _ = fs::remove_file(path);
        } else {
            fs::write(path, actual).expect("write golden file");
        }
        return None;
    }
    let expected = fs::read_to_string(path).unwrap_or_default();
    (expected != actual).then(|| format!("{} differs: {}", path.display(), diff(&expected, actual)))
}

/// Splits a `spawnd convert` YAML stream into (path, text) documents.
fn documents(stream: &str) -> Vec<(String, String)> {
    let mut docs: Vec<(String, String)> = Vec::new();
    let mut lines = stream.lines().peekable();
    while let Some(line) = lines.next() {
        if line == "---" {
            let path = lines
                .next()
                .and_then(|l| l.strip_prefix("# "))
                .expect("every document starts with its path")
                .to_string();
            docs.push((path, String::new()));
        } else {
            let (_, text) = docs.last_mut().expect("the stream starts with ---");
            text.push_str(line);
            text.push('\n');
        }
    }
    docs
}

#[test]
fn golden_outputs() {
    let mut complaints = Vec::new();
    for case in CASES {
        let output = convert(case, &[]);
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        if output.status.code() != Some(case.status) {
            complaints.push(format!(
                "{}: exit status {:?}, expected {}\n{stderr}",
                case.golden,
                output.status.code(),
                case.status
            ));
        }
        let base = corpus().join(case.golden);
        let out_path = PathBuf::from(format!("{}.out.yaml", base.display()));
        let err_path = PathBuf::from(format!("{}.stderr", base.display()));
        complaints.extend(check_golden(&out_path, &stdout));
        complaints.extend(check_golden(&err_path, &stderr));
        // Whatever the golden files say, the output must be YAML that reads.
        for (path, doc) in documents(&stdout) {
            if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(&doc) {
                complaints.push(format!("{}: {path} is not valid YAML: {e}", case.golden));
            }
        }
    }
    if blessing() {
        panic!("SPAWND_BLESS: golden files written; review `git diff tests/corpus/convert` and rerun without it");
    }
    assert!(complaints.is_empty(), "\n{}", complaints.join("\n"));
}

#[test]
fn every_corpus_file_belongs_to_a_case() {
    let mut known: HashSet<PathBuf> = HashSet::new();
    for case in CASES {
        let base = corpus().join(case.golden);
        known.insert(PathBuf::from(format!("{}.out.yaml", base.display())));
        known.insert(PathBuf::from(format!("{}.stderr", base.display())));
        for arg in case.args {
            known.insert(corpus().join(arg));
        }
    }
    let mut orphans = Vec::new();
    let mut stack = vec![corpus().join("xinetd"), corpus().join("inetd")];
    while let Some(dir) = stack.pop() {
        if known.contains(&dir) {
            continue; // a directory input: everything in it is read or skipped
        }
        for entry in fs::read_dir(&dir).expect("read corpus") {
            let path = entry.expect("corpus entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if !known.contains(&path) {
                orphans.push(path.display().to_string());
            }
        }
    }
    // Files under xinetd.d are inputs through xinetd.conf's includedir.
    orphans.retain(|p| !p.contains("/fedora/xinetd.d/"));
    assert!(orphans.is_empty(), "corpus files no case uses: {orphans:?}");
}

#[test]
fn output_directory_holds_the_same_documents_as_stdout() {
    for case in CASES.iter().filter(|c| c.status == 0) {
        let stdout = text(&convert(case, &[]).stdout);
        let dir = temp_dir(case.golden);
        let out = dir.join("conf");
        let output = convert(case, &["-o", out.to_str().expect("utf-8 temp path")]);
        assert!(
            output.status.success(),
            "{}: {}",
            case.golden,
            text(&output.stderr)
        );
        let docs = documents(&stdout);
        let mut written = Vec::new();
        for sub in [out.clone(), out.join("services.d")] {
            for entry in fs::read_dir(&sub).expect("read output dir") {
                let path = entry.expect("entry").path();
                if path.is_file() {
                    written.push(
                        path.strip_prefix(&out)
                            .expect("under out")
                            .display()
                            .to_string(),
                    );
                }
            }
        }
        written.sort();
        let mut expected: Vec<String> = docs.iter().map(|(p, _)| p.clone()).collect();
        expected.sort();
        assert_eq!(written, expected, "{}", case.golden);
        for (path, doc) in &docs {
            let on_disk = fs::read_to_string(out.join(path)).expect("read written file");
            assert_eq!(&on_disk, doc, "{}: {path}", case.golden);
        }

        // A second run refuses to overwrite, and changes nothing.
        let again = convert(case, &["-o", out.to_str().expect("utf-8 temp path")]);
        assert_eq!(again.status.code(), Some(1), "{}", case.golden);
        assert!(
            text(&again.stderr).contains("not overwriting existing file"),
            "{}",
            text(&again.stderr)
        );
        for (path, doc) in &docs {
            assert_eq!(&fs::read_to_string(out.join(path)).expect("read"), doc);
        }
    }
}

fn names_in(file: &str) -> HashSet<String> {
    fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect()
}

/// The value of `key: value` with YAML's double quotes taken off.
fn unquote(value: &str) -> &str {
    let value = value.split("  #").next().unwrap_or(value).trim();
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// Makes a converted service file checkable on this machine: `spawnd check`
/// requires programs, users, groups and banner files to exist, and the
/// corpus names those of the machines it came from (/usr/sbin/in.tftpd,
/// user nagios...). Only those values are replaced: a missing program by
/// /bin/cat, a missing user or group by root, a missing banner by an empty
/// file. Everything else is checked as converted.
fn localize(
    text: &str,
    users: &HashSet<String>,
    groups: &HashSet<String>,
    banner: &Path,
) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let replaced = if let Some(rest) = line.strip_prefix("exec: [") {
            let first = rest.split([',', ']']).next().unwrap_or("");
            if Path::new(unquote(first)).exists() {
                line.to_string()
            } else {
                format!("exec: [/bin/cat{}", &rest[first.len()..])
            }
        } else if let Some(rest) = line.strip_prefix("user: ") {
            if users.contains(unquote(rest)) {
                line.to_string()
            } else {
                "user: root".to_string()
            }
        } else if let Some(rest) = line.strip_prefix("group: ") {
            if groups.contains(unquote(rest)) {
                line.to_string()
            } else {
                "group: root".to_string()
            }
        } else if let Some((key @ ("banner" | "banner_success" | "banner_fail"), rest)) =
            line.split_once(": ")
        {
            if Path::new(unquote(rest)).exists() {
                line.to_string()
            } else {
                format!("{key}: {}", banner.display())
            }
        } else {
            line.to_string()
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    out
}

/// Every converted configuration must pass `spawnd check` (the format in
/// SPEC.md, as the configuration loader reads it).
#[test]
fn converted_directories_pass_spawnd_check() {
    let users = names_in("/etc/passwd");
    let groups = names_in("/etc/group");
    let mut failures = Vec::new();
    for case in CASES.iter().filter(|c| c.status == 0) {
        let dir = temp_dir(case.golden);
        let converted = dir.join("converted");
        let output = convert(case, &["-o", converted.to_str().expect("utf-8 temp path")]);
        assert!(
            output.status.success(),
            "{}: {}",
            case.golden,
            text(&output.stderr)
        );
        let checked = dir.join("checked");
        fs::create_dir_all(checked.join("services.d")).expect("create check dir");
        let banner = dir.join("banner");
        fs::write(&banner, "").expect("write banner");
        for sub in ["", "services.d"] {
            for entry in fs::read_dir(converted.join(sub)).expect("read converted") {
                let path = entry.expect("entry").path();
                if !path.is_file() {
                    continue;
                }
                let text = fs::read_to_string(&path).expect("read converted file");
                let target = checked.join(sub).join(path.file_name().expect("file name"));
                fs::write(target, localize(&text, &users, &groups, &banner)).expect("write");
            }
        }
        let output = spawnd(&["check", "-c", checked.to_str().expect("utf-8 temp path")]);
        if !output.status.success() {
            failures.push(format!(
                "{}: spawnd check exited {:?}\n{}{}",
                case.golden,
                output.status.code(),
                text(&output.stdout),
                text(&output.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn syntax_error_names_file_and_line_and_writes_nothing() {
    let dir = temp_dir("syntax");
    let out = dir.join("conf");
    let output = spawnd(&[
        "convert",
        "xinetd",
        "xinetd/syntax-error",
        "-o",
        out.to_str().expect("utf-8 temp path"),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("xinetd/syntax-error:10: error: 'service' inside 'service finger' (line 3): missing '}'?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("xinetd/syntax-error:15: error: expected 'attribute = value'"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    assert!(!out.exists(), "nothing may be written after an error");
}

#[test]
fn unknown_attribute_is_kept_as_a_comment_and_warned() {
    let output = spawnd(&["convert", "xinetd", "xinetd/unknown-attr"]);
    assert!(output.status.success());
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        stderr.contains(
            "xinetd/unknown-attr:16: warning: unknown attribute 'frobnicate'; kept as a comment"
        ),
        "{stderr}"
    );
    assert!(
        stdout.contains("# xinetd: frobnicate = yes please (not supported: unknown attribute)"),
        "{stdout}"
    );
    // Every attribute line of the input is either converted or commented.
    for attr in [
        "log_type",
        "rlimit_data",
        "libwrap",
        "mdns",
        "KEEPALIVE",
        "NODELAY",
        "NOLIBWRAP",
        "groups",
    ] {
        assert!(
            stdout.contains(&format!("# xinetd: {attr}"))
                || stdout.contains(&format!("flags {attr}")),
            "{attr}"
        );
    }
}

#[test]
fn missing_input_is_an_error() {
    let output = spawnd(&["convert", "xinetd", "xinetd/no-such-file"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("xinetd/no-such-file: error: cannot read: "));
    let output = spawnd(&["convert", "inetd", "inetd"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("inetd: error: not a regular file"));
}

#[test]
fn without_etc_services_the_builtin_table_is_used() {
    let output = Command::new(env!("CARGO_BIN_EXE_spawnd"))
        .args(["convert", "xinetd", "xinetd/rsync"])
        .current_dir(corpus())
        .env("SPAWND_SERVICES_FILE", "/nonexistent/services")
        .output()
        .expect("run spawnd");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).starts_with(
        "/nonexistent/services: warning: cannot read it (No such file or directory (os error 2)); \
         using spawnd's built-in table of well-known ports\n"
    ));
    assert!(text(&output.stdout).contains("\"*:873\""));
}
