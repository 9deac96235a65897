//! Generates the manual pages `spawnd(8)` and `spawnd-SUBCOMMAND(8)` and the
//! bash, zsh and fish completions from the clap definitions in `src/cli/args.rs`,
//! into `$OUT_DIR/man/` and `$OUT_DIR/completions/`. Nothing generated is
//! checked in; `packaging/build-deb.sh` copies these files into the package.
//! `spawnd.yaml(5)` is written by hand: `packaging/spawnd.yaml.5`.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

// The command-line types, compiled a second time for the build script. The
// file depends only on clap, log and std.
#[allow(dead_code)]
#[path = "src/cli/args.rs"]
mod cli;

/// Hand-written sections appended to `spawnd(8)`: files, signals, logging,
/// environment, exit status.
const EXTRA_SECTIONS: &str = include_str!("packaging/spawnd.8.in");

fn main() {
    println!("cargo:rerun-if-changed=src/cli/args.rs");
    println!("cargo:rerun-if-changed=packaging/spawnd.8.in");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");

    let out_dir = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR");
    let out_dir = Path::new(&out_dir);
    let man_dir = out_dir.join("man");
    let completion_dir = out_dir.join("completions");
    for dir in [&man_dir, &completion_dir] {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }

    let mut command = cli::Cli::command();
    command.build();
    let date = man_date();

    // The pages need no `help` subcommand: each subcommand has a page.
    let mut pages = cli::Cli::command().disable_help_subcommand(true);
    pages.build();
    write_main_page(&pages, &man_dir, &date);
    for sub in pages.get_subcommands() {
        write_sub_pages(sub, &man_dir, &date);
    }

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, "spawnd", &completion_dir)
            .unwrap_or_else(|e| panic!("{shell} completion: {e}"));
    }
}

fn manual(command: clap::Command, date: &str) -> clap_mangen::Man {
    let usage = synopsis(&command);
    clap_mangen::Man::new(command.override_usage(usage))
        .section("8")
        .date(date)
        .source(format!("spawnd {}", env!("CARGO_PKG_VERSION")))
        .manual("System Administration")
}

/// The SYNOPSIS line with every option's value placeholder
/// (`[-c|--config-dir DIR]`), which clap_mangen leaves out.
fn synopsis(command: &clap::Command) -> String {
    let mut parts = vec![command
        .get_bin_name()
        .unwrap_or_else(|| command.get_name())
        .to_string()];
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        let value = || -> String {
            arg.get_value_names()
                .map(|names| {
                    names
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_else(|| arg.get_id().to_string().to_uppercase())
        };
        if arg.is_positional() {
            let repeat = if arg.get_num_args().is_some_and(|n| n.max_values() > 1) {
                "..."
            } else {
                ""
            };
            parts.push(format!("{}{repeat}", value()));
            continue;
        }
        let names = match (arg.get_short(), arg.get_long()) {
            (Some(short), Some(long)) => format!("-{short}|--{long}"),
            (Some(short), None) => format!("-{short}"),
            (None, Some(long)) => format!("--{long}"),
            (None, None) => continue,
        };
        let takes = arg.get_action().takes_values();
        let value = if takes {
            format!(" {}", value())
        } else {
            String::new()
        };
        let repeat = if matches!(arg.get_action(), clap::ArgAction::Count) {
            "..."
        } else {
            ""
        };
        if arg.is_required_set() {
            parts.push(format!("{names}{value}"));
        } else {
            parts.push(format!("[{names}{value}]{repeat}"));
        }
    }
    if command.has_subcommands() {
        parts.push("COMMAND".to_string());
    }
    parts.join(" ")
}

/// `spawnd.8`: the generated sections, then the hand-written ones.
fn write_main_page(command: &clap::Command, dir: &Path, date: &str) {
    let man = manual(command.clone(), date);
    let mut page = Vec::new();
    let result = (|| {
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        man.render_description_section(&mut page)?;
        man.render_options_section(&mut page)?;
        man.render_subcommands_section(&mut page)?;
        page.write_all(EXTRA_SECTIONS.as_bytes())?;
        man.render_version_section(&mut page)
    })();
    result.expect("render spawnd.8");
    std::fs::write(dir.join("spawnd.8"), page).expect("write spawnd.8");
}

/// `spawnd-run.8`, `spawnd-convert-xinetd.8`, ...: one page per subcommand.
fn write_sub_pages(command: &clap::Command, dir: &Path, date: &str) {
    if command.is_hide_set() {
        return;
    }
    let man = manual(command.clone(), date);
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    page.extend_from_slice(b".SH \"SEE ALSO\"\n\\fBspawnd\\fR(8), \\fBspawnd.yaml\\fR(5)\n");
    std::fs::write(&path, page).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for sub in command.get_subcommands() {
        write_sub_pages(sub, dir, date);
    }
}

/// `SOURCE_DATE_EPOCH` (reproducible builds) as YYYY-MM-DD, else no date.
fn man_date() -> String {
    let Some(secs) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
    else {
        return String::new();
    };
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
