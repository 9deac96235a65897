//! `spawnd convert`: xinetd and inetd.conf importers.
//!
//! This file is the only one here that touches the file system: it reads
//! the inputs (following xinetd's `include` and `includedir`), hands their
//! text to the pure converters, and writes the result, either as a YAML
//! stream on stdout or as a configuration directory (`-o DIR`).
//!
//! Diagnostics go to stderr as `FILE:LINE: warning|error: ...`. Any error
//! means nothing is written and the exit status is 1.
//!
//! Ports of named services come from /etc/services, or from the file named
//! by `SPAWND_SERVICES_FILE` (to convert another machine's configuration, and
//! for tests), or from a built-in table when neither can be read.

mod common;
mod diag;
mod emit;
#[cfg(test)]
mod fuzz;
mod inetd;
mod model;
mod services_db;
mod xinetd;

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::exit::Exit;

use crate::cli::ConvertCommand;
use diag::Diags;
use model::Conversion;
use services_db::ServicesDb;
use xinetd::parse::Entry;
use xinetd::ParsedFile;

/// Input files larger than this are refused: no real configuration comes
/// near it, and it keeps a wrong path (a disk image, a log) from being read.
const MAX_INPUT: u64 = 4 << 20;

/// Runs a conversion; warnings go to stderr as `FILE:LINE: ...`.
pub fn run(command: &ConvertCommand) -> ExitCode {
    let mut diags = Diags::default();
    let db = services_db(&mut diags);
    let (conversion, tool, output) = match command {
        ConvertCommand::Xinetd { paths, output } => {
            let mut reader = XinetdReader::default();
            for path in paths {
                reader.read(path, &mut diags);
            }
            let mut conversion = Conversion::default();
            if !diags.has_errors() {
                conversion = xinetd::map::convert(&reader.files, &db, &mut diags);
            }
            (conversion, "spawnd convert xinetd", output)
        }
        ConvertCommand::Inetd { file, output } => {
            let mut conversion = Conversion::default();
            let name = file.display().to_string();
            if let Some(text) = read_text(file, &name, None, &mut diags) {
                conversion.units = inetd::convert(&text, &name, &db, &mut diags);
            }
            (conversion, "spawnd convert inetd", output)
        }
    };
    let mut conversion = conversion;
    common::assign_names(&mut conversion.units, &mut diags);

    print_diags(&diags);
    if diags.has_errors() {
        eprintln!("spawnd convert: errors above; nothing written");
        return Exit::Config.into();
    }
    if conversion.units.is_empty() {
        eprintln!("spawnd convert: warning: no services found");
    }
    let docs = emit::documents(&conversion, tool);
    let written = match output {
        None => {
            let mut stdout = io::stdout().lock();
            stdout
                .write_all(emit::stream(&docs).as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|e| format!("cannot write to stdout: {e}"))
        }
        Some(dir) => write_dir(dir, &docs),
    };
    match written {
        Ok(()) => Exit::Success.into(),
        Err(message) => {
            eprintln!("spawnd convert: error: {message}");
            Exit::Config.into()
        }
    }
}

fn print_diags(diags: &Diags) {
    let mut stderr = io::stderr().lock();
    for diag in &diags.list {
        let _ = writeln!(stderr, "{diag}");
    }
}

fn services_db(diags: &mut Diags) -> ServicesDb {
    let path = std::env::var_os("SPAWND_SERVICES_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/services"));
    match fs::read_to_string(&path) {
        Ok(text) => ServicesDb::parse(&text),
        Err(e) => {
            diags.warn(
                &path.display().to_string(),
                0,
                format!("cannot read it ({e}); using spawnd's built-in table of well-known ports"),
            );
            ServicesDb::builtin()
        }
    }
}

/// Reads a regular file as text. `from` is the include line that named it.
fn read_text(
    path: &Path,
    name: &str,
    from: Option<(&str, usize)>,
    diags: &mut Diags,
) -> Option<String> {
    let (file, line) = from.unwrap_or((name, 0));
    let prefix = if from.is_some() {
        format!("{name}: ")
    } else {
        String::new()
    };
    // Checked before opening: a FIFO or device would block or never end.
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            diags.error(file, line, format!("{prefix}cannot read: {e}"));
            return None;
        }
    };
    if !meta.is_file() {
        diags.error(file, line, format!("{prefix}not a regular file"));
        return None;
    }
    if meta.len() > MAX_INPUT {
        diags.error(
            file,
            line,
            format!(
                "{prefix}larger than {} MiB; not a configuration file",
                MAX_INPUT >> 20
            ),
        );
        return None;
    }
    match fs::read(path) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) => {
            diags.error(file, line, format!("{prefix}cannot read: {e}"));
            None
        }
    }
}

/// Reads xinetd files in xinetd's order, following includes once each.
#[derive(Default)]
struct XinetdReader {
    files: Vec<ParsedFile>,
    seen: HashSet<PathBuf>,
}

impl XinetdReader {
    /// Whether `path` (file or directory) has not been read yet; include
    /// loops and a file named twice end here.
    fn first_time(&mut self, path: &Path) -> bool {
        let key = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.seen.insert(key)
    }

    /// A path from the command line: a file is read whatever its name.
    fn read(&mut self, path: &Path, diags: &mut Diags) {
        if path.is_dir() {
            self.read_dir(path, None, diags);
        } else {
            self.read_file(path, None, diags);
        }
    }

    fn read_dir(&mut self, dir: &Path, from: Option<(&str, usize)>, diags: &mut Diags) {
        let shown = dir.display().to_string();
        let (file, line) = from.unwrap_or((&shown, 0));
        if !self.first_time(dir) {
            let what = if from.is_some() {
                format!("{shown}: ")
            } else {
                String::new()
            };
            diags.warn(file, line, format!("{what}already read; not read again"));
            return;
        }
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                diags.error(file, line, format!("{shown}: cannot read directory: {e}"));
                return;
            }
        };
        // xinetd reads them in C-locale order: compare bytes.
        let mut names: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.file_name())
            .collect();
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in names {
            let path = dir.join(&name);
            let text = name.to_string_lossy();
            if !xinetd::includedir_reads(&text) {
                diags.warn(
                    &path.display().to_string(),
                    0,
                    "skipped, as xinetd's includedir skips names with a '.' or ending in '~'",
                );
                continue;
            }
            if path.is_dir() {
                continue; // xinetd does not descend either
            }
            self.read_file(&path, None, diags);
        }
    }

    fn read_file(&mut self, path: &Path, from: Option<(&str, usize)>, diags: &mut Diags) {
        let name = path.display().to_string();
        let key = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if !self.seen.insert(key) {
            let (file, line) = from.unwrap_or((&name, 0));
            diags.warn(
                file,
                line,
                format!("{name} was already read; not read again"),
            );
            return;
        }
        let Some(text) = read_text(path, &name, from, diags) else {
            return;
        };
        let entries = xinetd::parse::parse(&text, &name, diags);
        // Includes are read after the file that names them; a relative path
        // is taken from that file's directory (xinetd, a daemon, would take
        // it from /, which is rarely what a converted copy means).
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let includes: Vec<(bool, String, usize)> = entries
            .iter()
            .filter_map(|entry| match entry {
                Entry::Include { path, line } => Some((false, path.clone(), *line)),
                Entry::IncludeDir { path, line } => Some((true, path.clone(), *line)),
                Entry::Block(_) => None,
            })
            .collect();
        self.files.push(ParsedFile {
            file: name.clone(),
            entries,
        });
        for (is_dir, target, line) in includes {
            let target = base.join(target);
            if is_dir {
                self.read_dir(&target, Some((&name, line)), diags);
            } else {
                self.read_file(&target, Some((&name, line)), diags);
            }
        }
    }
}

/// Writes `docs` under `dir`, refusing to replace any existing file: the
/// check comes first, so a refusal writes nothing.
fn write_dir(dir: &Path, docs: &[emit::Document]) -> Result<(), String> {
    let existing: Vec<String> = docs
        .iter()
        .map(|doc| dir.join(&doc.path))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !existing.is_empty() {
        return Err(format!(
            "not overwriting existing file{} {} (remove {} or choose another directory)",
            if existing.len() == 1 { "" } else { "s" },
            existing.join(", "),
            if existing.len() == 1 { "it" } else { "them" },
        ));
    }
    let services = dir.join("services.d");
    fs::create_dir_all(&services)
        .map_err(|e| format!("cannot create {}: {e}", services.display()))?;
    for doc in docs {
        let path = dir.join(&doc.path);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        file.write_all(doc.text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
