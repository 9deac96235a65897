//! Name resolution done once at load time, never on the connection path:
//! users, groups and supplementary groups become ids; programs must exist
//! and be executable.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group, Uid, User};

use super::error::ConfigError;
use super::keys::KeyIndex;
use super::model::{Action, Principal, Service};

/// The ids a child switches to before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// A problem with one key, placed in the file by `resolve`.
type Problem = (&'static str, String);

fn error(service: &Service, keys: &KeyIndex, (key, message): Problem) -> ConfigError {
    ConfigError::new(&service.file, message)
        .at(keys.locate(key))
        .key(key)
}

fn lookup_user(user: &Principal) -> Result<User, String> {
    let found = match user {
        Principal::Id(id) => User::from_uid(Uid::from_raw(*id)),
        Principal::Name(name) => User::from_name(name),
    };
    match found {
        Ok(Some(user)) => Ok(user),
        Ok(None) if matches!(user, Principal::Id(_)) => Err(format!("no user with uid {user}")),
        Ok(None) => Err(format!("no such user \"{user}\"")),
        Err(e) => Err(format!("cannot look up user {user}: {e}")),
    }
}

fn lookup_group(group: &Principal) -> Result<u32, String> {
    match group {
        Principal::Id(id) => Ok(*id),
        Principal::Name(name) => match Group::from_name(name) {
            Ok(Some(group)) => Ok(group.gid.as_raw()),
            Ok(None) => Err(format!("no such group {name:?}")),
            Err(e) => Err(format!("cannot look up group {name}: {e}")),
        },
    }
}

/// The credentials a service asks for, or `None` to run as spawnd does.
fn credentials(service: &Service) -> Result<Option<Credentials>, Problem> {
    if service.user.is_none() && service.group.is_none() && service.groups.is_none() {
        return Ok(None);
    }
    let user = match &service.user {
        Some(principal) => Some(lookup_user(principal).map_err(|m| ("user", m))?),
        None => None,
    };
    let gid = match (&service.group, &user) {
        (Some(group), _) => lookup_group(group).map_err(|m| ("group", m))?,
        (None, Some(user)) => user.gid.as_raw(),
        (None, None) => nix::unistd::getegid().as_raw(),
    };
    let uid = user
        .as_ref()
        .map_or_else(|| nix::unistd::geteuid().as_raw(), |u| u.uid.as_raw());
    let mut groups = match (&service.groups, &user) {
        (Some(list), _) => list
            .iter()
            .map(lookup_group)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| ("groups", m))?,
        (None, Some(user)) => {
            let name = CString::new(user.name.as_bytes())
                .map_err(|_| ("user", "bad user name".to_string()))?;
            nix::unistd::getgrouplist(&name, Gid::from_raw(gid))
                .map_err(|e| ("user", format!("cannot list groups of {}: {e}", user.name)))?
                .into_iter()
                .map(Gid::as_raw)
                .collect()
        }
        (None, None) => Vec::new(),
    };
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    groups.dedup();
    if !nix::unistd::geteuid().is_root() {
        let same = uid == nix::unistd::geteuid().as_raw() && gid == nix::unistd::getegid().as_raw();
        if !same || service.groups.is_some() {
            let key = if service.user.is_some() {
                "user"
            } else if service.group.is_some() {
                "group"
            } else {
                "groups"
            };
            return Err((
                key,
                "changing user or groups needs spawnd to run as root (remove the key to run as spawnd's own user)".into(),
            ));
        }
        return Ok(None);
    }
    Ok(Some(Credentials { uid, gid, groups }))
}

/// The program as the child will see it (inside `chroot`, if set).
fn program_on_disk(service: &Service, program: &Path) -> PathBuf {
    match &service.chroot {
        Some(root) => root.join(program.strip_prefix("/").unwrap_or(program)),
        None => program.to_path_buf(),
    }
}

fn check_program(service: &Service) -> Result<(), Problem> {
    let Action::Exec { program, .. } = &service.action else {
        return Ok(());
    };
    let path = program_on_disk(service, program);
    let meta = std::fs::metadata(&path)
        .map_err(|e| ("exec", format!("program {}: {e}", path.display())))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err((
            "exec",
            format!("program {} is not an executable file", path.display()),
        ));
    }
    Ok(())
}

/// A banner file, read as it will be at run time (`crate::sys::fsafe`: no
/// link followed, regular, and with `strict` owned as configuration).
pub fn read_banner(path: &Path, strict: bool) -> Result<Vec<u8>, crate::sys::fsafe::Error> {
    let rules = crate::sys::fsafe::ReadRules {
        strict,
        follow: false,
        max: MAX_BANNER,
    };
    crate::sys::fsafe::read(path, rules)
}

/// Banner files are sent to clients whole: at most this much of one.
pub const MAX_BANNER: u64 = 64 * 1024;

fn banner_text(
    key: &'static str,
    path: &Option<PathBuf>,
    strict: bool,
) -> Result<Vec<u8>, Problem> {
    match path {
        Some(path) => {
            read_banner(path, strict).map_err(|e| (key, format!("{}: {e}", path.display())))
        }
        None => Ok(Vec::new()),
    }
}

/// Resolves what a service needs from the system; every problem is
/// returned, placed in `text` (the service's file). `strict`: banner files
/// are held to the configuration files' ownership rule.
pub fn resolve(service: &mut Service, text: &str, strict: bool) -> Result<(), Vec<ConfigError>> {
    let mut problems: Vec<Problem> = Vec::new();
    if let Err(e) = check_program(service) {
        problems.push(e);
    }
    match credentials(service) {
        Ok(credentials) => service.credentials = credentials,
        Err(e) => problems.push(e),
    }
    let mut texts = [Vec::new(), Vec::new(), Vec::new()];
    for ((key, path), text) in [
        ("banner", &service.banners.banner),
        ("banner_success", &service.banners.success),
        ("banner_fail", &service.banners.fail),
    ]
    .into_iter()
    .zip(&mut texts)
    {
        match banner_text(key, path, strict) {
            Ok(read) => *text = read,
            Err(e) => problems.push(e),
        }
    }
    let [banner, success, fail] = texts;
    service.banner_texts = super::model::Rare::new(super::model::BannerTexts {
        banner,
        success,
        fail,
    });
    let mut ids = (None, None);
    if let Some(owner) = &service.unix_socket.owner {
        match lookup_user(owner) {
            Ok(user) => ids.0 = Some(user.uid.as_raw()),
            Err(message) => problems.push(("unix_owner", message)),
        }
    }
    if let Some(group) = &service.unix_socket.group {
        match lookup_group(group) {
            Ok(gid) => ids.1 = Some(gid),
            Err(message) => problems.push(("unix_group", message)),
        }
    }
    if ids != (None, None) {
        let mut perms = (*service.unix_socket).clone();
        (perms.owner_id, perms.group_id) = ids;
        service.unix_socket = super::model::Rare::new(perms);
    }
    if let Some(root) = &service.chroot {
        if !root.is_dir() {
            problems.push(("chroot", format!("{} is not a directory", root.display())));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let keys = KeyIndex::new(text);
        Err(problems
            .into_iter()
            .map(|p| error(service, &keys, p))
            .collect())
    }
}
