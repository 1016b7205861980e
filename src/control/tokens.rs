//! Named operators: the tokens file (`[admin] tokens_file`) and the role each token grants.
//!
//! Owns: the file's format and validation (every problem at once, with `file:line:col` and a
//! "did you mean"), the file-mode check, and finding which operator a presented bearer token
//! belongs to. Must not touch: routes, the orchestrator or the event log — it answers "who is
//! this and what may they do", the routes decide what to do with that.
//!
//! ```toml
//! [[tokens]]
//! name = "alice"
//! role = "operator"          # viewer | operator | admin
//! token = "a long random secret"
//!
//! [[tokens]]
//! name = "ci"
//! role = "viewer"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```
//!
//! Every token is kept as the SHA-256 of its secret and a presented token is hashed once and
//! compared with every entry in constant time, without stopping at a match: how long the check
//! takes tells nothing about which entry, if any, matched.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use toml_edit::{ImDocument, Item, Value};

use crate::diag::{did_you_mean, line_col};

/// What a token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Status, events, plans, metrics.
    Viewer,
    /// And pause, resume, approve, rollback, abort, set-weight.
    Operator,
    /// And start, reload: everything.
    Admin,
}

impl Role {
    pub const NAMES: [&'static str; 3] = ["viewer", "operator", "admin"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One named token.
#[derive(Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    digest: [u8; 32],
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Operator {
    /// An operator whose token is `secret` (surrounding white space ignored).
    pub fn with_secret(name: &str, role: Role, secret: &str) -> Operator {
        Operator {
            name: name.to_owned(),
            role,
            digest: sha256(secret.trim().as_bytes()),
        }
    }

    /// Whether both hold the same token (compared in constant time).
    pub fn same_secret(&self, other: &Operator) -> bool {
        bool::from(self.digest.ct_eq(&other.digest))
    }
}

#[derive(Debug, Error)]
pub enum TokensError {
    #[error("cannot read the tokens file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the tokens file {path} can be read or written by other users (mode {mode:o}): run \
         `chmod 600 {path}` (or 640 with a group only cutover is in)"
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error("the tokens file {path} has {} problem(s):\n{}", problems.len(), problems.join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// The operators of a tokens file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    operators: Vec<Operator>,
}

impl Tokens {
    pub fn new(operators: Vec<Operator>) -> Tokens {
        Tokens { operators }
    }

    pub fn operators(&self) -> &[Operator] {
        &self.operators
    }

    /// Read and check `path`: its mode (no access for others, no write for the group), then
    /// its content, every problem reported at once.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let read = |source| TokensError::Read {
            path: path.to_owned(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
            if mode & 0o027 != 0 {
                return Err(TokensError::Mode {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        parse(&path.display().to_string(), &text).map_err(|problems| TokensError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }

    /// The operator an `Authorization: Bearer SECRET` value belongs to, if any.
    pub fn identify(&self, authorization: Option<&[u8]>) -> Option<&Operator> {
        let given = authorization.and_then(|a| a.strip_prefix(b"Bearer "))?;
        let digest = sha256(given);
        let mut found = None;
        for op in &self.operators {
            if bool::from(op.digest.ct_eq(&digest)) {
                found = found.or(Some(op));
            }
        }
        found
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Shortest secret accepted in a tokens file: a token is a password that scripts keep.
pub const MIN_TOKEN_CHARS: usize = 16;

const ENTRY_KEYS: [&str; 4] = ["name", "role", "token", "sha256"];

/// Parse a tokens file's text; `file` names it in the problems (`file:line:col: ...`).
pub fn parse(file: &str, text: &str) -> Result<Tokens, Vec<String>> {
    let doc = match ImDocument::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let (line, col) = e.span().map_or((1, 1), |span| line_col(text, span.start));
            return Err(vec![format!(
                "{file}:{line}:{col}: not valid TOML: {}",
                e.message()
            )]);
        }
    };
    let mut problems = Vec::new();
    let at = |span: Option<std::ops::Range<usize>>| {
        let (line, col) = line_col(text, span.map_or(0, |s| s.start));
        format!("{file}:{line}:{col}")
    };
    for (key, item) in doc.iter() {
        if key != "tokens" {
            let hint = suggestion(key, &["tokens"]);
            problems.push(format!(
                "{}: unknown key `{key}`{hint}: the file holds `[[tokens]]` entries only",
                at(item
                    .span()
                    .or_else(|| doc.as_table().key(key).and_then(|k| k.span())))
            ));
        }
    }
    let mut operators: Vec<Operator> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let entries = match doc.get("tokens") {
        None => {
            problems.push(format!(
                "{file}:1:1: no `[[tokens]]` entry: add one per operator with `name`, `role` and \
                 `token` (or `sha256`)"
            ));
            return Err(problems);
        }
        Some(Item::ArrayOfTables(a)) => a,
        Some(other) => {
            problems.push(format!(
                "{}: `tokens` must be written as `[[tokens]]` entries",
                at(other.span())
            ));
            return Err(problems);
        }
    };
    for entry in entries.iter() {
        let here = at(entry.span());
        for (key, item) in entry.iter() {
            if !ENTRY_KEYS.contains(&key) {
                let hint = suggestion(key, &ENTRY_KEYS);
                problems.push(format!(
                    "{}: unknown key `{key}`{hint}; an entry has `name`, `role`, and `token` or \
                     `sha256`",
                    at(entry.key(key).and_then(|k| k.span()).or(item.span()))
                ));
            }
        }
        let string = |key: &str, problems: &mut Vec<String>| -> Option<(String, String)> {
            let item = entry.get(key)?;
            match item.as_value() {
                Some(Value::String(s)) => Some((s.value().clone(), at(item.span()))),
                _ => {
                    problems.push(format!("{}: `{key}` must be a string", at(item.span())));
                    None
                }
            }
        };
        let name = string("name", &mut problems);
        let role = string("role", &mut problems);
        let token = string("token", &mut problems);
        let sha = string("sha256", &mut problems);
        let name = match name {
            None if entry.get("name").is_none() => {
                problems.push(format!("{here}: the entry has no `name`"));
                None
            }
            None => None,
            Some((n, pos)) => {
                let ok = !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
                if !ok {
                    problems.push(format!(
                        "{pos}: `name` {n:?} must be letters, digits, `.`, `_`, `@` or `-` (it \
                         is the actor in the event log)"
                    ));
                    None
                } else if names.contains(&n) {
                    problems.push(format!("{pos}: `name` {n:?} is used by an earlier entry"));
                    None
                } else {
                    names.push(n.clone());
                    Some(n)
                }
            }
        };
        let role = match role {
            None if entry.get("role").is_none() => {
                problems.push(format!(
                    "{here}: the entry has no `role`: one of viewer, operator, admin"
                ));
                None
            }
            None => None,
            Some((r, pos)) => Role::parse(&r).or_else(|| {
                let hint = suggestion(&r, &Role::NAMES);
                problems.push(format!(
                    "{pos}: `role` {r:?} is not one of viewer, operator, admin{hint}"
                ));
                None
            }),
        };
        let digest = match (token, sha) {
            (Some(_), Some((_, pos))) => {
                problems.push(format!(
                    "{pos}: the entry has both `token` and `sha256`: keep one"
                ));
                None
            }
            (None, None) if entry.get("token").is_none() && entry.get("sha256").is_none() => {
                problems.push(format!(
                    "{here}: the entry has neither `token` nor `sha256` (the hex SHA-256 of the \
                     token, e.g. from `printf %s TOKEN | sha256sum`)"
                ));
                None
            }
            (None, None) => None,
            (Some((t, pos)), None) => {
                let t = t.trim();
                if t.chars().count() < MIN_TOKEN_CHARS {
                    problems.push(format!(
                        "{pos}: `token` is shorter than {MIN_TOKEN_CHARS} characters: use a long \
                         random secret (e.g. `head -c 32 /dev/urandom | base64`)"
                    ));
                    None
                } else {
                    Some(sha256(t.as_bytes()))
                }
            }
            (None, Some((h, pos))) => match hex32(&h) {
                Some(d) => Some(d),
                None => {
                    problems.push(format!(
                        "{pos}: `sha256` must be 64 hexadecimal digits (the SHA-256 of the token, \
                         e.g. from `printf %s TOKEN | sha256sum`)"
                    ));
                    None
                }
            },
        };
        if let Some(d) = digest {
            if let Some(other) = operators.iter().find(|o| o.digest == d) {
                problems.push(format!(
                    "{here}: the same token as `{}`: every operator needs a token of their own",
                    other.name
                ));
                continue;
            }
        }
        if let (Some(name), Some(role), Some(digest)) = (name, role, digest) {
            operators.push(Operator { name, role, digest });
        }
    }
    if problems.is_empty() {
        Ok(Tokens { operators })
    } else {
        Err(problems)
    }
}

/// " (did you mean `x`?)" when a candidate is close to `word`, else nothing.
fn suggestion(word: &str, candidates: &[&str]) -> String {
    did_you_mean(word, candidates)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice-secret-0123456789";

    fn bearer(s: &str) -> Vec<u8> {
        format!("Bearer {s}").into_bytes()
    }

    #[test]
    fn a_token_or_its_sha256_identifies_its_operator() {
        let ci_digest: String = sha256(b"ci-secret-0123456789")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let text = format!(
            "[[tokens]]\nname = \"alice\"\nrole = \"operator\"\ntoken = \"{ALICE}\"\n\n\
             [[tokens]]\nname = \"ci\"\nrole = \"viewer\"\nsha256 = \"{ci_digest}\"\n"
        );
        let t = parse("t.toml", &text).expect("valid");
        let alice = t.identify(Some(&bearer(ALICE))).expect("alice");
        assert_eq!((alice.name.as_str(), alice.role), ("alice", Role::Operator));
        let ci = t
            .identify(Some(&bearer("ci-secret-0123456789")))
            .expect("ci");
        assert_eq!((ci.name.as_str(), ci.role), ("ci", Role::Viewer));
        assert!(t
            .identify(Some(&bearer("wrong-secret-0123456789")))
            .is_none());
        assert!(
            t.identify(Some(ALICE.as_bytes())).is_none(),
            "no Bearer prefix"
        );
        assert!(t.identify(None).is_none());
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        for name in Role::NAMES {
            assert_eq!(Role::parse(name).map(Role::as_str), Some(name));
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_position() {
        let text = "[[tokens]]\nname = \"alice\"\nrole = \"operater\"\ntoken = \"short\"\n\n\
                    [[tokens]]\nname = \"alice\"\nrole = \"admin\"\ntokn = \"x\"\n\n\
                    [[tokens]]\nname = \"bob\"\nrole = \"viewer\"\ntoken = \"bob-secret-0123456789\"\nsha256 = \"00\"\n\n\
                    [[tokens]]\nname = \"eve\"\nrole = \"viewer\"\nsha256 = \"zz\"\n\n\
                    extra = 1\n";
        let problems = parse("t.toml", text).expect_err("invalid");
        let all = problems.join("\n");
        for want in [
            "t.toml:3:8: `role` \"operater\" is not one of viewer, operator, admin (did you mean `operator`?)",
            "t.toml:4:9: `token` is shorter than 16 characters",
            "t.toml:7:8: `name` \"alice\" is used by an earlier entry",
            "t.toml:9:1: unknown key `tokn` (did you mean `token`?)",
            "the entry has neither `token` nor `sha256`",
            "t.toml:15:10: the entry has both `token` and `sha256`: keep one",
            "t.toml:20:10: `sha256` must be 64 hexadecimal digits",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }

    #[test]
    fn two_operators_cannot_share_a_token_and_an_empty_file_is_refused() {
        let text = format!(
            "[[tokens]]\nname = \"a\"\nrole = \"admin\"\ntoken = \"{ALICE}\"\n\
             [[tokens]]\nname = \"b\"\nrole = \"viewer\"\ntoken = \"{ALICE}\"\n"
        );
        let p = parse("t.toml", &text).expect_err("shared token");
        assert!(p[0].contains("the same token as `a`"), "{p:?}");
        let p = parse("t.toml", "").expect_err("empty");
        assert!(p[0].contains("no `[[tokens]]` entry"), "{p:?}");
        let p = parse("t.toml", "tokens = 3").expect_err("wrong shape");
        assert!(p[0].contains("`[[tokens]]` entries"), "{p:?}");
        let p = parse("t.toml", "[[tokens]\n").expect_err("not toml");
        assert!(p[0].starts_with("t.toml:1:"), "{p:?}");
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_refused_naming_chmod() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens.toml");
        let text = format!("[[tokens]]\nname = \"a\"\nrole = \"admin\"\ntoken = \"{ALICE}\"\n");
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = Tokens::load(&path).expect_err("world-readable").to_string();
        assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let t = Tokens::load(&path).expect("group-readable is fine");
        assert_eq!(t.operators().len(), 1);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(Tokens::load(&path).is_ok());
    }
}
