//! The commands that do not serve: their command-line types (`args`, which
//! `build.rs` also compiles to write the manual pages and completions),
//! `check` and `list` (`check`), and `status` (`status`). `run` is the
//! daemon (`crate::daemon`); `convert` is `crate::convert`.

pub mod args;
pub mod check;
pub mod status;

pub use args::*;
