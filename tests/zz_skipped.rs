//! Runs last (test binaries run in name order): says how many tests were
//! skipped in this run and why. Under `CI=true` none may be: a missing
//! prerequisite fails its test there (`util::skip`).

mod util;

#[test]
fn report_the_tests_skipped_in_this_run() {
    util::report_skips();
}
