//! TCP Wrappers' `/etc/hosts.allow` and `/etc/hosts.deny` (hosts_access(5)),
//! read for one question only: could these rules refuse some client of a
//! daemon? spawnd does not apply them (it has `access:`), so a service they
//! guarded must not be served as if they were empty.
//!
//! The rules: the first `hosts.allow` rule that matches the daemon and the
//! client grants access (unless its options say `deny` or `twist`); failing
//! that, the first `hosts.deny` rule that matches refuses; failing that,
//! access is granted. A line is `daemons : clients [: options]`, `\` joins
//! lines, `#` starts a comment, and a list may hold `EXCEPT`.
//!
//! The answer errs toward "refuses": a daemon pattern spawnd cannot judge
//! (`name@host`, wildcards) counts as matching a deny rule and as not
//! matching an allow rule; only an allow rule for every client (`ALL`)
//! with no restricting option lets later deny rules be ignored.

/// Does a pattern list match the daemon?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Yes,
    No,
    Maybe,
}

impl Match {
    fn and_not(self, other: Match) -> Match {
        match (self, other) {
            (Match::No, _) | (_, Match::Yes) => Match::No,
            (Match::Yes, Match::No) => Match::Yes,
            _ => Match::Maybe,
        }
    }

    fn or(self, other: Match) -> Match {
        match (self, other) {
            (Match::Yes, _) | (_, Match::Yes) => Match::Yes,
            (Match::Maybe, _) | (_, Match::Maybe) => Match::Maybe,
            _ => Match::No,
        }
    }
}

/// One rule, with where it is.
struct Rule<'a> {
    line: usize,
    text: String,
    daemons: Vec<&'a str>,
    clients: Vec<&'a str>,
    options: Vec<String>,
}

/// The rules of one file, continuation lines joined.
fn rules(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let (start, mut joined) = match pending.take() {
            Some((start, so_far)) => (start, so_far),
            None => {
                if raw.trim_start().starts_with('#') || raw.trim().is_empty() {
                    continue;
                }
                (index + 1, String::new())
            }
        };
        match raw.strip_suffix('\\') {
            Some(head) => {
                joined.push_str(head);
                joined.push(' ');
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(raw);
                out.push((start, joined));
            }
        }
    }
    out.extend(pending);
    out
}

/// Splits a rule at its colons, except those inside `[...]` (IPv6).
fn fields(rule: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (at, c) in rule.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                out.push(&rule[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    out.push(&rule[start..]);
    out
}

fn words(list: &str) -> Vec<&str> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect()
}

/// How a daemon list (with EXCEPT) matches `daemon`.
fn daemon_match(list: &[&str], daemon: &str) -> Match {
    let (head, rest) = match list.iter().position(|w| w.eq_ignore_ascii_case("EXCEPT")) {
        Some(at) => (&list[..at], Some(&list[at + 1..])),
        None => (list, None),
    };
    let mut matched = Match::No;
    for pattern in head {
        let one = if pattern.eq_ignore_ascii_case("ALL") || pattern.eq_ignore_ascii_case(daemon) {
            Match::Yes
        } else if pattern.contains(['@', '*', '?']) {
            // A server address (`name@host`) or a wildcard: the daemon name
            // part may match; which server address a client reaches is
            // not known here.
            Match::Maybe
        } else {
            Match::No
        };
        matched = matched.or(one);
    }
    match rest {
        Some(rest) => matched.and_not(daemon_match(rest, daemon)),
        None => matched,
    }
}

/// Whether a client list is every client, with no exception.
fn every_client(list: &[&str]) -> bool {
    list.iter().any(|w| w.eq_ignore_ascii_case("ALL"))
        && !list.iter().any(|w| w.eq_ignore_ascii_case("EXCEPT"))
}

/// Options that refuse or replace the service for the clients they match.
fn refusing_option(options: &[String]) -> Option<&str> {
    options.iter().map(String::as_str).find(|option| {
        let word = option.split_whitespace().next().unwrap_or_default();
        word.eq_ignore_ascii_case("deny") || word.eq_ignore_ascii_case("twist")
    })
}

/// Why the rules in `allow` and `deny` (the texts of hosts.allow and
/// hosts.deny, named `allow_name` and `deny_name` in the answer) could
/// refuse some client of `daemon`; `None` if they refuse nobody.
pub fn refusal(
    daemon: &str,
    (allow_name, allow): (&str, &str),
    (deny_name, deny): (&str, &str),
) -> Option<String> {
    for (line, text) in rules(allow) {
        let Some(rule) = rule_of(line, &text) else {
            continue;
        };
        let matched = daemon_match(&rule.daemons, daemon);
        if matched == Match::No {
            continue;
        }
        if let Some(option) = refusing_option(&rule.options) {
            return Some(format!(
                "{allow_name}:{}: `{}` ({option}) refuses clients of {daemon}",
                rule.line,
                rule.text.trim()
            ));
        }
        if matched == Match::Yes && every_client(&rule.clients) {
            return None; // everyone is let in before hosts.deny is read
        }
    }
    for (line, text) in rules(deny) {
        let Some(rule) = rule_of(line, &text) else {
            continue;
        };
        if daemon_match(&rule.daemons, daemon) != Match::No && !rule.clients.is_empty() {
            return Some(format!(
                "{deny_name}:{}: `{}` refuses clients of {daemon}",
                rule.line,
                rule.text.trim()
            ));
        }
    }
    None
}

fn rule_of(line: usize, text: &str) -> Option<Rule<'_>> {
    let parts = fields(text);
    let (daemons, clients) = (parts.first()?, parts.get(1)?);
    Some(Rule {
        line,
        text: text.to_string(),
        daemons: words(daemons),
        clients: words(clients),
        options: parts[2..].iter().map(|o| o.trim().to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(daemon: &str, allow: &str, deny: &str) -> Option<String> {
        refusal(daemon, ("hosts.allow", allow), ("hosts.deny", deny))
    }

    #[test]
    fn comments_only_refuse_nobody() {
        let allow = "# /etc/hosts.allow\n#\n# Example:    ALL: LOCAL @some_netgroup\n";
        let deny = "# Example:    ALL: some.host.name, .some.domain\n# ALL: PARANOID\n\n";
        assert_eq!(why("micro-httpd", allow, deny), None);
        assert_eq!(why("micro-httpd", "", ""), None);
    }

    #[test]
    fn a_deny_rule_for_the_daemon_or_all_refuses() {
        let refused = why("in.telnetd", "", "in.telnetd: 10.0.0.0/8\n").unwrap_or_default();
        assert_eq!(
            refused,
            "hosts.deny:1: `in.telnetd: 10.0.0.0/8` refuses clients of in.telnetd"
        );
        assert!(why("micro-httpd", "", "# c\nALL: PARANOID\n").is_some_and(|w| w.contains(":2:")));
        assert!(why("micro-httpd", "", "MICRO-HTTPD, sshd : ALL\n").is_some());
        // Another daemon's rule is not this one's.
        assert_eq!(
            why("micro-httpd", "", "sshd: ALL\nin.telnetd : .example.com\n"),
            None
        );
    }

    #[test]
    fn except_in_the_daemon_list() {
        assert_eq!(
            why("in.fingerd", "", "ALL EXCEPT in.fingerd: other.host\n"),
            None
        );
        assert!(why("micro-httpd", "", "ALL EXCEPT in.fingerd: other.host\n").is_some());
        // a EXCEPT b EXCEPT c is a EXCEPT (b EXCEPT c).
        assert!(why("c", "", "ALL EXCEPT b c EXCEPT c: x\n").is_some());
        assert_eq!(why("b", "", "ALL EXCEPT b c EXCEPT c: x\n"), None);
    }

    #[test]
    fn an_allow_for_everyone_first_makes_deny_rules_moot() {
        assert_eq!(why("micro-httpd", "micro-httpd: ALL\n", "ALL: ALL\n"), None);
        assert_eq!(why("micro-httpd", "ALL: ALL\n", "ALL: ALL\n"), None);
        // Only some clients allowed: the others reach hosts.deny.
        assert!(why("micro-httpd", "micro-httpd: 127.0.0.1\n", "ALL: ALL\n").is_some());
        assert!(why("micro-httpd", "ALL: ALL EXCEPT 10.0.0.1\n", "ALL: ALL\n").is_some());
        // A pattern whose match is unsure grants no one for certain.
        assert!(why("micro-httpd", "micro-httpd@127.0.0.1: ALL\n", "ALL: ALL\n").is_some());
    }

    #[test]
    fn allow_rules_that_deny_or_twist_refuse() {
        let refused = why("in.ftpd", "in.ftpd: .bad.example: DENY\n", "").unwrap_or_default();
        assert!(refused.starts_with("hosts.allow:1:"), "{refused}");
        assert!(refused.contains("(DENY)"), "{refused}");
        assert!(why("in.ftpd", "ALL: [::1]: twist /bin/echo no\n", "").is_some());
        // A logging option refuses nobody.
        assert_eq!(
            why(
                "in.ftpd",
                "in.ftpd: ALL: severity auth.info\n",
                "ALL: ALL\n"
            ),
            None
        );
    }

    #[test]
    fn continuation_lines_and_odd_patterns() {
        let deny = "sshd,\\\n  micro-httpd: \\\n  192.168.\n";
        let refused = why("micro-httpd", "", deny).unwrap_or_default();
        assert!(refused.starts_with("hosts.deny:1:"), "{refused}");
        assert!(why("micro-httpd", "", "micro*: ALL\n").is_some());
        assert!(why("micro-httpd", "", "micro-httpd@10.0.0.1: ALL\n").is_some());
        // A line without a client list is no rule.
        assert_eq!(why("micro-httpd", "", "micro-httpd\n"), None);
    }
}
