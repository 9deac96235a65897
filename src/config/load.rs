//! Reading the configuration directory: the only file I/O of the config
//! layer. Hostile entries (FIFOs, devices, huge files, symlink loops) are
//! refused without ever blocking on them.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::{from_yaml, ConfigError};
use super::model::{Global, Service};
use super::raw::{RawDefaults, RawGlobal, RawService};
use super::{resolve, validate};

pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Everything read from a configuration directory.
#[derive(Debug)]
pub struct Loaded {
    pub global: Global,
    /// Services that checked, in file-name order (disabled ones included).
    pub services: Vec<Service>,
    /// One entry per problem; a file with errors contributes no service.
    pub errors: Vec<ConfigError>,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Refuse files writable by others (only enforced when running as root).
    pub strict: bool,
    /// Look up users and programs (off only in pure unit tests).
    pub resolve: bool,
}

/// Editor leftovers and package-manager files that are never services.
pub fn is_ignored(name: &str) -> bool {
    const SUFFIXES: [&str; 4] = ["~", ".swp", ".bak", ".disabled"];
    name.starts_with('.')
        || SUFFIXES.iter().any(|s| name.ends_with(s))
        || name.contains(".dpkg-")
        || name.contains(".rpm")
        || !(name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// The name of the service a file in `services.d/` defines.
pub fn service_name(path: &Path) -> &str {
    service_stem(path.file_name().and_then(OsStr::to_str).unwrap_or_default())
}

fn service_stem(name: &str) -> &str {
    name.strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .unwrap_or(name)
}

/// The file-mode rule sshd's StrictModes uses: owned by root or by us, and
/// writable by nobody else.
fn check_ownership(path: &Path, meta: &Metadata) -> Result<(), ConfigError> {
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(ConfigError::new(
            path,
            format!("refused: owned by uid {} (must be root or uid {euid}); --insecure-config overrides", meta.uid()),
        ));
    }
    if meta.mode() & 0o022 != 0 && !meta.file_type().is_symlink() {
        return Err(ConfigError::new(
            path,
            format!(
                "refused: mode {:04o} lets others write it (chmod go-w); --insecure-config overrides",
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Reads a file that must be a regular file of at most 1 MiB. Opened
/// non-blocking so a FIFO swapped in after the check cannot hang spawnd.
pub fn read_config_file(path: &Path, strict: bool) -> Result<String, ConfigError> {
    let describe = |e: std::io::Error| match e.raw_os_error() {
        Some(libc::ELOOP) => {
            ConfigError::new(path, "too many levels of symbolic links (a symlink loop?)")
        }
        _ => ConfigError::new(path, format!("cannot read: {e}")),
    };
    let meta = std::fs::metadata(path).map_err(describe)?;
    check_regular(path, &meta)?;
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(describe)?;
    let meta = file.metadata().map_err(describe)?;
    check_regular(path, &meta)?;
    if strict {
        check_ownership(path, &meta)?;
    }
    let mut text = String::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => ConfigError::new(path, "not valid UTF-8 text"),
            _ => describe(e),
        })?;
    if text.len() as u64 > MAX_FILE_SIZE {
        return Err(ConfigError::new(path, "larger than 1 MiB; not read"));
    }
    Ok(text)
}

fn check_regular(path: &Path, meta: &Metadata) -> Result<(), ConfigError> {
    let kind = meta.file_type();
    if kind.is_file() {
        if meta.len() > MAX_FILE_SIZE {
            return Err(ConfigError::new(
                path,
                format!("larger than 1 MiB ({} bytes); not read", meta.len()),
            ));
        }
        return Ok(());
    }
    let what = if kind.is_dir() {
        "a directory"
    } else {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device node"
        } else {
            "not a regular file"
        }
    };
    Err(ConfigError::new(
        path,
        format!("{what}, not a regular file; not read"),
    ))
}

fn parse_global(path: &Path, strict: bool) -> Result<(Global, RawDefaults), Vec<ConfigError>> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Global::default(), RawDefaults::default()))
        }
        _ => {}
    }
    let text = read_config_file(path, strict).map_err(|e| vec![e])?;
    if text.trim().is_empty() {
        return Ok((Global::default(), RawDefaults::default()));
    }
    let raw: RawGlobal =
        serde_yaml::from_str(&text).map_err(|e| vec![from_yaml(path, &text, &e)])?;
    validate::global(path, &text, raw)
}

/// Reads only `DIR/spawnd.yaml`.
pub fn load_global(dir: &Path, strict: bool) -> Result<Global, Vec<ConfigError>> {
    let strict = strict && nix::unistd::geteuid().is_root();
    parse_global(&dir.join("spawnd.yaml"), strict).map(|(global, _)| global)
}

/// Parses and validates one service file.
pub fn parse_service(
    path: &Path,
    text: &str,
    defaults: &RawDefaults,
) -> Result<Service, Vec<ConfigError>> {
    let raw: RawService = if text.trim().is_empty() {
        RawService::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| vec![from_yaml(path, text, &e)])?
    };
    validate::service(path, text, service_name(path), raw, defaults)
}

/// The service files of `services.d/`, sorted, with the names skipped.
fn service_files(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::warn!(
                "config_missing path={} detail=\"no services.d directory; no services\"",
                dir.display()
            );
            return Vec::new();
        }
        Err(e) => {
            errors.push(ConfigError::new(dir, format!("cannot read directory: {e}")));
            return Vec::new();
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                errors.push(ConfigError::new(dir, format!("cannot read directory: {e}")));
                break;
            }
        };
        let name = entry.file_name();
        match name.to_str() {
            Some(name) if is_ignored(name) => continue,
            Some(_) => files.push(entry.path()),
            None => errors.push(ConfigError::new(
                &entry.path(),
                "file name is not valid UTF-8; skipped",
            )),
        }
    }
    files.sort();
    files
}

/// Loads `dir`. `Err` only when the directory itself or `spawnd.yaml` is
/// unusable: those stop `run` from starting and reject a reload.
pub fn load(dir: &Path, options: Options) -> Result<Loaded, Vec<ConfigError>> {
    let strict = options.strict && nix::unistd::geteuid().is_root();
    let meta = std::fs::metadata(dir).map_err(|e| {
        vec![ConfigError::new(
            dir,
            format!("cannot read configuration directory: {e}"),
        )]
    })?;
    if !meta.is_dir() {
        return Err(vec![ConfigError::new(dir, "not a directory")]);
    }
    if strict {
        check_ownership(dir, &meta).map_err(|e| vec![e])?;
    }
    let (global, defaults) = parse_global(&dir.join("spawnd.yaml"), strict)?;
    let mut errors = Vec::new();
    let services_dir = dir.join("services.d");
    if strict {
        if let Ok(meta) = std::fs::metadata(&services_dir) {
            if let Err(e) = check_ownership(&services_dir, &meta) {
                return Ok(Loaded {
                    global,
                    services: Vec::new(),
                    errors: vec![e],
                });
            }
        }
    }
    let mut services = Vec::new();
    for path in service_files(&services_dir, &mut errors) {
        let parsed = read_config_file(&path, strict)
            .map_err(|e| vec![e])
            .and_then(|text| parse_service(&path, &text, &defaults));
        match parsed {
            Ok(service) => services.push(service),
            Err(mut file_errors) => errors.append(&mut file_errors),
        }
    }
    let mut rejected: std::collections::HashSet<usize> = std::collections::HashSet::new();
    for (index, mut error) in validate::across(&services) {
        rejected.insert(index);
        if let (Some(key), Ok(text)) = (&error.key, std::fs::read_to_string(&error.file)) {
            error.position = super::error::locate_key(&text, &[key.as_str()]);
        }
        errors.push(error);
    }
    if options.resolve {
        for (index, service) in services.iter_mut().enumerate() {
            if rejected.contains(&index) {
                continue;
            }
            if let Err(mut problems) = resolve::resolve(service) {
                rejected.insert(index);
                errors.append(&mut problems);
            }
        }
    }
    let services = services
        .into_iter()
        .enumerate()
        .filter(|(index, _)| !rejected.contains(index))
        .map(|(_, service)| service)
        .collect();
    Ok(Loaded {
        global,
        services,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_names() {
        for name in [
            ".hidden.yaml",
            "x.yaml~",
            "x.yaml.swp",
            "x.yaml.dpkg-old",
            "x.yaml.rpmnew",
            "x.yaml.bak",
            "x.yaml.disabled",
            "README",
            "x.conf",
        ] {
            assert!(is_ignored(name), "{name}");
        }
        for name in ["daytime.yaml", "echo.yml", "a.b.yaml"] {
            assert!(!is_ignored(name), "{name}");
        }
        assert_eq!(service_stem("a.b.yaml"), "a.b");
    }
}
