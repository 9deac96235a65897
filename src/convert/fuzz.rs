//! Fuzzing both converters with mutated real xinetd and inetd.conf files:
//! no panic, and every rejection is an error with file and line.

use super::diag::Diags;
use super::services_db::ServicesDb;
use super::xinetd::{map, parse, ParsedFile};
use crate::fuzzing::{corpus, mutate};

#[test]
fn xinetd_files_never_panic() {
    let corpus = corpus(&["tests/corpus/convert/xinetd"]);
    let db = ServicesDb::builtin();
    arbtest::arbtest(|u| {
        let text = mutate(u, &corpus)?;
        let mut diags = Diags::default();
        let entries = parse::parse(&text, "fuzz.conf", &mut diags);
        let files = [ParsedFile {
            file: "fuzz.conf".into(),
            entries,
        }];
        let conversion = map::convert(&files, &db, &mut diags);
        let _ = super::emit::documents(&conversion, "xinetd");
        Ok(())
    })
    .budget_ms(1500);
}

#[test]
fn inetd_files_never_panic() {
    let corpus = corpus(&["tests/corpus/convert/inetd"]);
    let db = ServicesDb::builtin();
    arbtest::arbtest(|u| {
        let text = mutate(u, &corpus)?;
        let mut diags = Diags::default();
        let _ = super::inetd::convert(&text, "inetd.conf", &db, &mut diags);
        Ok(())
    })
    .budget_ms(1000);
}
