//! Fuzzing the loader with mutated real service files: it must never
//! panic, and every rejection must be a clear error naming the file.

use std::path::Path;

use super::load::parse_service;
use super::raw::{RawDefaults, RawGlobal};
use crate::fuzzing::{corpus, mutate};

#[test]
fn service_files_never_panic() {
    let corpus = corpus(&["services.d", "tests/corpus/convert"]);
    let path = Path::new("/etc/spawnd/services.d/fuzz.yaml");
    arbtest::arbtest(|u| {
        let text = mutate(u, &corpus)?;
        if let Err(errors) = parse_service(path, &text, &RawDefaults::default()) {
            assert!(!errors.is_empty());
            for error in errors {
                let shown = error.to_string();
                assert!(
                    shown.starts_with("/etc/spawnd/services.d/fuzz.yaml"),
                    "{shown}"
                );
                assert!(!error.message.is_empty(), "{shown}");
            }
        }
        Ok(())
    })
    .budget_ms(1500);
}

#[test]
fn global_files_never_panic() {
    let corpus = corpus(&["services.d", "tests/corpus/convert"]);
    let path = Path::new("spawnd.yaml");
    arbtest::arbtest(|u| {
        let text = mutate(u, &corpus)?;
        if let Ok(raw) = serde_yaml::from_str::<RawGlobal>(&text) {
            let _ = super::validate::global(path, &text, raw);
        }
        Ok(())
    })
    .budget_ms(500);
}

#[test]
fn alias_bombs_are_rejected_not_expanded() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..12 {
        let prev = (b'a' + level as u8 - 1) as char;
        let name = (b'a' + level as u8) as char;
        text.push_str(&format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    text.push_str("listen: *l\n");
    let started = std::time::Instant::now();
    let result = parse_service(Path::new("bomb.yaml"), &text, &RawDefaults::default());
    assert!(result.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
