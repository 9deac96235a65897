//! `spawnd convert xinetd`: xinetd.conf and xinetd.d files to spawnd services.
//!
//! `parse` reads the grammar of one file, `map` gives the attributes their
//! spawnd meaning across all files (defaults apply everywhere), `addr`
//! handles xinetd's address forms. Reading files and following includes is
//! the caller's (`convert::run`).

pub mod addr;
pub mod map;
pub mod parse;

/// One input file, parsed.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    /// As shown in messages and headers.
    pub file: String,
    pub entries: Vec<parse::Entry>,
}

/// Whether xinetd's `includedir` reads a file of this name: it skips names
/// containing a dot or ending in a tilde (backups, .rpmsave, .dpkg-old...).
pub fn includedir_reads(name: &str) -> bool {
    !name.contains('.') && !name.ends_with('~')
}

#[cfg(test)]
mod tests {
    #[test]
    fn includedir_skips_like_xinetd() {
        assert!(super::includedir_reads("rsync"));
        assert!(super::includedir_reads("echo-udp"));
        assert!(!super::includedir_reads("rsync.rpmsave"));
        assert!(!super::includedir_reads("rsync~"));
        assert!(!super::includedir_reads(".hidden"));
    }
}
