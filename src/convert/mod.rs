//! `spawnd convert`: xinetd and inetd.conf importers.
//!
//! `read` reaches the inputs (following xinetd's `include` and
//! `includedir`) through a `Files` source, this file hands their text to
//! the pure converters and writes the result, either as a YAML stream on
//! stdout or as a configuration directory (`-o DIR`). `import` serves the
//! daemon's `include_inetd_conf` and `include_xinetd` with the same mapping.
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
pub mod hosts_access;
mod import;
mod inetd;
mod model;
mod read;
pub mod services_db;
mod xinetd;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::exit::Exit;

use crate::cli::ConvertCommand;
pub use diag::{Diag, Diags, Severity};
pub use import::{import_inetd, import_xinetd, Import};
use model::Conversion;
use read::{read_text, XinetdReader};
pub use read::{Files, ReadError, StdFiles};
use services_db::ServicesDb;
pub use xinetd::includedir_reads;

/// Input files larger than this are refused: no real configuration comes
/// near it, and it keeps a wrong path (a disk image, a log) from being read.
const MAX_INPUT: u64 = 4 << 20;

/// Runs a conversion; warnings go to stderr as `FILE:LINE: ...`.
pub fn run(command: &ConvertCommand) -> ExitCode {
    let mut diags = Diags::default();
    let db = services_db(&StdFiles, &mut diags);
    let (conversion, tool, output) = match command {
        ConvertCommand::Xinetd { paths, output } => {
            let mut reader = XinetdReader::new(&StdFiles);
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
            if let Some(text) = read_text(&StdFiles, file, &name, None, &mut diags) {
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

/// The port table: /etc/services, or the file `SPAWND_SERVICES_FILE`
/// names, or the built-in table when neither can be read.
pub fn services_db(files: &dyn Files, diags: &mut Diags) -> ServicesDb {
    let path = std::env::var_os("SPAWND_SERVICES_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/services"));
    match files.read(&path) {
        Ok(text) => ServicesDb::parse(&text),
        Err(e) => {
            diags.warn(
                &path.display().to_string(),
                0,
                format!(
                    "cannot read it ({}); using spawnd's built-in table of well-known ports",
                    e.message
                        .strip_prefix("cannot read: ")
                        .unwrap_or(&e.message)
                ),
            );
            ServicesDb::builtin()
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
