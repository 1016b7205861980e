//! Who is calling: the operators the control API accepts right now.
//!
//! Owns: putting the tokens file (`[admin] tokens_file`, [`super::tokens`]) and the single
//! shared token ([`super::auth`], the admin operator `admin-token`) into one list; swapping in
//! a new list when a reload reads the tokens file again ([`ReloadPart`]: a bad file is refused
//! whole and the old list stays); and the rate-limited warnings for refused requests. Must not
//! touch: routes (which role a route needs is `routes::ACCESS`), the orchestrator, the log of
//! events — it answers "who is this", the routes decide what they may do.
//!
//! Both may be set: then the named tokens and the shared token are all accepted, the shared
//! one as `admin-token` (so no entry of the file may use that name or the same secret). With a
//! tokens file no token is generated: every operator is named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use thiserror::Error;

use super::auth::{Token, TokenError, SHARED_NAME};
use super::tokens::{Operator, Role, Tokens, TokensError};
use crate::reload::{ReloadPart, Staged};

#[derive(Debug, Error)]
pub enum AccessError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Tokens(#[from] TokensError),
}

/// Where the server's tokens are configured (paths as the config resolved them).
#[derive(Debug, Clone, Copy)]
pub struct AccessConfig<'a> {
    pub tokens_file: Option<&'a Path>,
    pub token_file: Option<&'a Path>,
    pub store_dir: &'a Path,
    pub admin: SocketAddr,
}

/// The operators accepted now; shared by every admin connection and the reloader.
pub struct Access {
    current: Arc<ArcSwap<Tokens>>,
    tokens_file: Option<PathBuf>,
    shared: Option<Token>,
    unknown: Throttle,
    forbidden: Throttle,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("tokens_file", &self.tokens_file)
            .field("shared", &self.shared)
            .field("operators", &self.current.load().operators().len())
            .finish_non_exhaustive()
    }
}

impl Access {
    /// Read the tokens at start. `env_token` is `CUTOVER_TOKEN`.
    pub fn resolve(
        cfg: AccessConfig<'_>,
        env_token: Option<String>,
    ) -> Result<Access, AccessError> {
        let Some(path) = cfg.tokens_file else {
            let token = Token::resolve(cfg.token_file, env_token, cfg.store_dir, cfg.admin)?;
            return Ok(Access::new(
                Tokens::new(vec![token.operator()]),
                None,
                Some(token),
            ));
        };
        let shared = Token::configured(cfg.token_file, env_token)?;
        let tokens = with_shared(path, Tokens::load(path)?, shared.as_ref())?;
        Ok(Access::new(tokens, Some(path.to_owned()), shared))
    }

    fn new(tokens: Tokens, tokens_file: Option<PathBuf>, shared: Option<Token>) -> Access {
        Access {
            current: Arc::new(ArcSwap::from_pointee(tokens)),
            tokens_file,
            shared,
            unknown: Throttle::default(),
            forbidden: Throttle::default(),
        }
    }

    /// The shared token, if the server has one (where it came from, for the start message).
    pub fn shared(&self) -> Option<&Token> {
        self.shared.as_ref()
    }

    /// The tokens file and how many operators it names now, if there is one.
    pub fn tokens_file(&self) -> Option<(&Path, usize)> {
        let shared = usize::from(self.shared.is_some());
        self.tokens_file
            .as_deref()
            .map(|p| (p, self.current.load().operators().len() - shared))
    }

    /// The operator an `Authorization` header value belongs to, if any.
    pub fn identify(&self, authorization: Option<&[u8]>) -> Option<Operator> {
        self.current.load().identify(authorization).cloned()
    }

    /// Log (at most once a second, counting the rest) a request without a valid token.
    pub fn log_unknown(&self, method: &http::Method, path: &str, sent_token: bool) {
        if let Some(suppressed) = self.unknown.allow() {
            let token = if sent_token { "wrong" } else { "missing" };
            tracing::warn!(%method, path, token, suppressed, "control API: refused, no valid token (401)");
        }
    }

    /// Log (at most once a second, counting the rest) an operator asking above their role.
    pub fn log_forbidden(&self, who: &Operator, needs: Role, method: &http::Method, path: &str) {
        if let Some(suppressed) = self.forbidden.allow() {
            tracing::warn!(
                operator = %who.name,
                role = %who.role,
                needs = %needs,
                %method,
                path,
                suppressed,
                "control API: refused, role too low (403)"
            );
        }
    }
}

/// `tokens` plus the shared token as [`SHARED_NAME`], unless a file entry takes its name or
/// secret.
fn with_shared(path: &Path, tokens: Tokens, shared: Option<&Token>) -> Result<Tokens, TokensError> {
    let Some(shared) = shared else {
        return Ok(tokens);
    };
    let op = shared.operator();
    let mut problems = Vec::new();
    if tokens.operators().iter().any(|o| o.name == SHARED_NAME) {
        problems.push(format!(
            "`name` \"{SHARED_NAME}\" is the name of the shared token (admin.token_file or \
             CUTOVER_TOKEN): rename the entry"
        ));
    }
    if let Some(o) = tokens.operators().iter().find(|o| o.same_secret(&op)) {
        problems.push(format!(
            "`{}` has the same token as the shared one (admin.token_file or CUTOVER_TOKEN): \
             every operator needs a token of their own",
            o.name
        ));
    }
    if !problems.is_empty() {
        return Err(TokensError::Invalid {
            path: path.to_owned(),
            problems,
        });
    }
    let mut all = tokens.operators().to_vec();
    all.push(op);
    Ok(Tokens::new(all))
}

impl ReloadPart for Access {
    fn stage(&self) -> Result<Staged, String> {
        let Some(path) = &self.tokens_file else {
            return Ok(Staged {
                changed: Vec::new(),
                apply: Box::new(|| {}),
            });
        };
        let new = Tokens::load(path)
            .and_then(|t| with_shared(path, t, self.shared.as_ref()))
            .map_err(|e| e.to_string())?;
        let what = differences(&self.current.load(), &new);
        let changed = match what.is_empty() {
            true => Vec::new(),
            false => vec![format!("admin.tokens_file ({})", what.join(", "))],
        };
        let current = self.current.clone();
        Ok(Staged {
            changed,
            apply: Box::new(move || current.store(Arc::new(new))),
        })
    }
}

/// What differs between two operator lists, by name (never a secret): `added bob`,
/// `removed carol`, `alice: role admin`, `dave: new token`.
fn differences(old: &Tokens, new: &Tokens) -> Vec<String> {
    let find =
        |list: &Tokens, name: &str| list.operators().iter().find(|o| o.name == name).cloned();
    let mut out = Vec::new();
    for o in new.operators() {
        match find(old, &o.name) {
            None => out.push(format!("added {}", o.name)),
            Some(before) => {
                if before.role != o.role {
                    out.push(format!("{}: role {}", o.name, o.role));
                }
                if !before.same_secret(o) {
                    out.push(format!("{}: new token", o.name));
                }
            }
        }
    }
    for o in old.operators() {
        if find(new, &o.name).is_none() {
            out.push(format!("removed {}", o.name));
        }
    }
    out
}

/// At most one log line a second; counts the ones it held back.
#[derive(Default)]
struct Throttle {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// `Some(lines held back since the last one)` when a line may be logged now.
    fn allow(&self) -> Option<u64> {
        let Ok(mut s) = self.state.lock() else {
            return None;
        };
        let now = Instant::now();
        match s.0 {
            Some(last) if now.duration_since(last) < Duration::from_secs(1) => {
                s.1 += 1;
                None
            }
            _ => {
                let held = s.1;
                *s = (Some(now), 0);
                Some(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::auth::TokenSource;

    fn op(name: &str, role: Role, secret: &str) -> Operator {
        Operator::with_secret(name, role, secret)
    }

    #[test]
    fn differences_name_operators_never_secrets() {
        let old = Tokens::new(vec![
            op("alice", Role::Viewer, "alice-secret-0123456789"),
            op("carol", Role::Admin, "carol-secret-0123456789"),
            op("dave", Role::Operator, "dave-secret-0123456789"),
        ]);
        let new = Tokens::new(vec![
            op("alice", Role::Operator, "alice-secret-0123456789"),
            op("bob", Role::Viewer, "bob-secret-0123456789"),
            op("dave", Role::Operator, "dave-rotated-0123456789"),
        ]);
        assert_eq!(
            differences(&old, &new),
            [
                "alice: role operator",
                "added bob",
                "dave: new token",
                "removed carol"
            ]
        );
        assert!(differences(&new, &new).is_empty());
    }

    #[test]
    fn the_shared_token_joins_as_admin_unless_a_file_entry_clashes() {
        let path = Path::new("t.toml");
        let shared = Token::from_secret("shared-secret-0123456789", TokenSource::Env);
        let file = Tokens::new(vec![op("alice", Role::Viewer, "alice-secret-0123456789")]);
        let all = with_shared(path, file, Some(&shared)).expect("no clash");
        let who = all
            .identify(Some(b"Bearer shared-secret-0123456789"))
            .expect("shared");
        assert_eq!((who.name.as_str(), who.role), (SHARED_NAME, Role::Admin));
        let clash = Tokens::new(vec![op(
            SHARED_NAME,
            Role::Viewer,
            "shared-secret-0123456789",
        )]);
        let e = with_shared(path, clash, Some(&shared))
            .expect_err("clash")
            .to_string();
        assert!(
            e.contains("rename the entry") && e.contains("same token"),
            "{e}"
        );
    }

    #[test]
    fn throttle_lets_one_line_a_second_through_and_counts_the_rest() {
        let t = Throttle::default();
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        if let Ok(mut s) = t.state.lock() {
            s.0 = Instant::now().checked_sub(Duration::from_secs(2));
        }
        assert_eq!(t.allow(), Some(2));
    }
}
