//! The commands that do not serve: their command-line types (`args`, which
//! `build.rs` also compiles to write the manual pages and completions),
//! `check` and `list` (`check`), and `status` (`status`). `run` is the
//! daemon (`crate::daemon`); `convert` is `crate::convert`.

pub mod args;
pub mod check;
pub mod status;

pub use args::*;

/// The configuration `-c` names, for the code that loads it.
pub fn location(dir: &ConfigDir) -> crate::config::Location {
    crate::config::Location {
        dir: dir.dir.clone(),
        strict: !dir.insecure_config,
    }
}
