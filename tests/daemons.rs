//! Real daemons in inetd mode, talked to by their real clients, each run
//! inside a network namespace with only loopback.

mod util;

use std::process::Stdio;

use util::*;

fn first_command(candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|p| std::path::Path::new(p).is_file())
        .map(|p| p.to_string())
}

#[test]
fn tftp_over_udp_with_tftpd_hpa() {
    require!(is_root(), "needs root for a network namespace and in.tftpd");
    require!(
        has_command("tftp") && std::path::Path::new("/usr/sbin/in.tftpd").exists(),
        "tftpd-hpa and tftp-hpa are not installed"
    );
    let config = Config::new();
    let root = config.path().join("tftproot");
    std::fs::create_dir(&root).unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("hello.bin"), &payload).unwrap();
    // -u root: the temporary directory is not readable by the tftp user;
    // -t 1: exit one second after the last request, as inetd mode expects.
    config.service(
        "tftp",
        &format!(
            "socket: dgram\nlisten: 127.0.0.1:6969\nwait: true\nexec: [/usr/sbin/in.tftpd, -u, root, -t, '1', -s, {}]\n",
            root.display()
        ),
    );
    let Some(spawnd) = start_in_netns(&config) else {
        return;
    };
    for round in 0..2 {
        let dest = config.path().join(format!("fetched-{round}.bin"));
        let status = netns_command(&spawnd, "tftp")
            .args([
                "-m",
                "binary",
                "127.0.0.1",
                "6969",
                "-c",
                "get",
                "hello.bin",
            ])
            .arg(&dest)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read(&dest).unwrap(), payload, "round {round}");
    }
    spawnd
        .log
        .expect(&["accept service=tftp", "peer=127.0.0.1:"]);
    spawnd.log.expect(&["exit service=tftp", "status=0"]);
}

#[test]
fn rsync_daemon_in_inetd_mode() {
    require!(is_root(), "needs root for a network namespace");
    require!(has_command("rsync"), "rsync is not installed");
    let config = Config::new();
    let data = config.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(data.join("b.txt"), "beta\n".repeat(10_000)).unwrap();
    let conf = config.path().join("rsyncd.conf");
    std::fs::write(
        &conf,
        format!(
            "reverse lookup = no\nuse chroot = no\nuid = root\ngid = root\n[files]\npath = {}\nread only = yes\n",
            data.display()
        ),
    )
    .unwrap();
    config.service(
        "rsync",
        &format!(
            "listen: 127.0.0.1:8873\nexec: [/usr/bin/rsync, --daemon, '--config={}']\n",
            conf.display()
        ),
    );
    let Some(spawnd) = start_in_netns(&config) else {
        return;
    };
    let listing = netns_command(&spawnd, "rsync")
        .arg("rsync://127.0.0.1:8873/")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("files"),
        "{listing:?}"
    );
    let dest = config.path().join("copy");
    let status = netns_command(&spawnd, "rsync")
        .arg("-a")
        .arg("rsync://127.0.0.1:8873/files/")
        .arg(&dest)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(dest.join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        std::fs::read(dest.join("b.txt")).unwrap(),
        std::fs::read(data.join("b.txt")).unwrap()
    );
    assert!(
        spawnd.log.wait_for_n(&["exit service=rsync"], 2),
        "{}",
        spawnd.log.text()
    );
    // rsyncd exits 255 after a bare module listing (the client hangs up);
    // the transfer itself must end cleanly.
    assert!(spawnd.log.count("status=0") >= 1, "{}", spawnd.log.text());
}

#[test]
fn git_daemon_in_inetd_mode() {
    require!(is_root(), "needs root for a network namespace");
    let Some(git) = first_command(&["/usr/bin/git", "/usr/local/bin/git"]) else {
        skip("git is not installed");
        return;
    };
    let config = Config::new();
    let repo = config.path().join("repos/project.git");
    let run = |args: &[&str], dir: &std::path::Path| {
        let out = std::process::Command::new(&git)
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    let work = config.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    run(&["init", "-q", "-b", "main"], &work);
    std::fs::write(work.join("README"), "served by spawnd\n").unwrap();
    run(&["add", "README"], &work);
    run(&["commit", "-q", "-m", "first"], &work);
    std::fs::create_dir_all(repo.parent().unwrap()).unwrap();
    run(
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            repo.to_str().unwrap(),
        ],
        config.path(),
    );
    let base = config.path().join("repos");
    config.service(
        "git",
        &format!(
            "listen: 127.0.0.1:9418\nstderr: log\nexec: [{git}, daemon, --inetd, --export-all, '--base-path={}', {}]\n",
            base.display(),
            base.display()
        ),
    );
    let Some(spawnd) = start_in_netns(&config) else {
        return;
    };
    let clone = config.path().join("clone");
    let status = netns_command(&spawnd, &git)
        .args(["clone", "-q", "git://127.0.0.1:9418/project.git"])
        .arg(&clone)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(clone.join("README")).unwrap(),
        "served by spawnd\n"
    );
    spawnd.log.expect(&["exit service=git", "status=0"]);
}
