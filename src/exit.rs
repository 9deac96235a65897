//! The exit statuses of every spawnd command, in one place (spawnd(8),
//! EXIT STATUS). Usage errors (2) are clap's own.

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// A configuration error, or input `convert` cannot take: the message
    /// names the file and, where there is one, the line.
    Config,
    /// A failure at run time: nothing could be served, the daemon failed
    /// before it was ready, `status` found no spawnd to ask.
    Runtime,
}

impl Exit {
    pub const fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Config => 1,
            Exit::Runtime => 3,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}
