//! Bearer-token authentication for the gRPC services.
//!
//! The tokens file has one token per line, `NAME TOKEN [ROLE]`, where ROLE
//! is `agent` (the default: may stream batches), `query` (may call the
//! query API) or `admin` (both); blank lines and `#` comments are ignored.
//! A call without a token, or with one the file does not hold, is answered
//! UNAUTHENTICATED; a known token without the needed role PERMISSION_DENIED.
//! Tokens are compared in constant time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tonic::{Request, Status};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Stream batches (AgentService).
    Agent,
    /// Call the query API (QueryService).
    Query,
    /// Both.
    Admin,
}

impl Role {
    fn allows(self, needed: Role) -> bool {
        self == Role::Admin || self == needed
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "agent" => Some(Role::Agent),
            "query" => Some(Role::Query),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who called: the name of the token that authenticated the call. Put in
/// the request's extensions by [`Authenticator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name from the tokens file.
    pub name: String,
    /// The token's role (calls that write, such as `RecordUpdateEvents`,
    /// need [`Role::Admin`]).
    pub role: Role,
}

/// What is wrong with a tokens file.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// The file could not be read.
    #[error("reading the tokens file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A line is not `NAME TOKEN [ROLE]`.
    #[error("tokens file line {line}: {problem} (expected `NAME TOKEN [agent|query|admin]`)")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The file holds no token: authentication would refuse everyone.
    #[error("the tokens file {0} holds no token")]
    Empty(PathBuf),
}

#[derive(Debug)]
struct Entry {
    name: String,
    token: Vec<u8>,
    role: Role,
}

/// The tokens the collector accepts.
#[derive(Debug)]
pub struct Tokens {
    entries: Vec<Entry>,
}

/// Shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_CHARS: usize = 16;

impl Tokens {
    /// Reads a tokens file.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_owned(),
            source,
        })?;
        let tokens = Tokens::parse(&text)?;
        if tokens.entries.is_empty() {
            return Err(TokensError::Empty(path.to_owned()));
        }
        Ok(tokens)
    }

    /// Parses the text of a tokens file.
    pub fn parse(text: &str) -> Result<Tokens, TokensError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let fields: Vec<&str> = content.split_whitespace().collect();
            let problem = |problem: String| TokensError::Line { line, problem };
            let (name, token, role) = match fields.as_slice() {
                [name, token] => (*name, *token, Role::Agent),
                [name, token, role] => (
                    *name,
                    *token,
                    Role::parse(role).ok_or_else(|| problem(format!("unknown role {role:?}")))?,
                ),
                _ => return Err(problem(format!("{} fields", fields.len()))),
            };
            if token.chars().count() < MIN_TOKEN_CHARS {
                return Err(problem(format!(
                    "token of {name:?} is shorter than {MIN_TOKEN_CHARS} characters"
                )));
            }
            if entries.iter().any(|e| e.token == token.as_bytes()) {
                return Err(problem(format!("token of {name:?} is used twice")));
            }
            entries.push(Entry {
                name: name.to_owned(),
                token: token.as_bytes().to_vec(),
                role,
            });
        }
        Ok(Tokens { entries })
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry holding `token`, compared in constant time against every
    /// entry so the timing does not tell how much of a guess was right.
    fn find(&self, token: &[u8]) -> Option<&Entry> {
        let mut found = None;
        for entry in &self.entries {
            if constant_time_eq(&entry.token, token) {
                found = Some(entry);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A tonic interceptor that requires a token with a role.
#[derive(Debug, Clone)]
pub struct Authenticator {
    tokens: Option<Arc<Tokens>>,
    needed: Role,
    failures: Arc<AtomicU64>,
}

impl Authenticator {
    /// Requires `needed` when `tokens` is set; lets everything through when
    /// it is `None` (authentication off). Refusals are counted in
    /// `failures`.
    pub fn new(tokens: Option<Arc<Tokens>>, needed: Role, failures: Arc<AtomicU64>) -> Self {
        Authenticator {
            tokens,
            needed,
            failures,
        }
    }

    /// Checks one request's metadata.
    pub fn check(&self, request: &Request<()>) -> Result<Option<Principal>, Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(None);
        };
        let refuse = |status: Status| {
            self.failures.fetch_add(1, Ordering::Relaxed);
            Err(status)
        };
        let Some(value) = request.metadata().get("authorization") else {
            return refuse(Status::unauthenticated(
                "this collector requires a bearer token: send `authorization: Bearer TOKEN` \
                 (upid-agent --token-file, upid --token-file)",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(token) = token else {
            return refuse(Status::unauthenticated(
                "the authorization header is not `Bearer TOKEN`",
            ));
        };
        match tokens.find(token.as_bytes()) {
            None => refuse(Status::unauthenticated(
                "unknown token: check the token file against the collector's tokens file",
            )),
            Some(entry) if !entry.role.allows(self.needed) => {
                refuse(Status::permission_denied(format!(
                    "token {:?} has role {:?}, this service needs {:?} (or admin)",
                    entry.name, entry.role, self.needed
                )))
            }
            Some(entry) => Ok(Some(Principal {
                name: entry.name.clone(),
                role: entry.role,
            })),
        }
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(principal) = self.check(&request)? {
            request.extensions_mut().insert(principal);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const FILE: &str = "# agents\nnode-a aaaaaaaaaaaaaaaaaaaa\nops qqqqqqqqqqqqqqqqqqqq query # the CLI\n\nroot rrrrrrrrrrrrrrrrrrrr admin\n";

    fn request(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth
            && let Ok(v) = a.parse()
        {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    fn code(a: &Authenticator, auth: Option<&str>) -> Option<Code> {
        a.check(&request(auth)).err().map(|s| s.code())
    }

    #[test]
    fn roles_decide_who_may_call_what() -> Result<(), TokensError> {
        let tokens = Some(Arc::new(Tokens::parse(FILE)?));
        let failures = Arc::new(AtomicU64::new(0));
        let agent = Authenticator::new(tokens.clone(), Role::Agent, failures.clone());
        let query = Authenticator::new(tokens, Role::Query, failures.clone());
        assert_eq!(code(&agent, Some("Bearer aaaaaaaaaaaaaaaaaaaa")), None);
        assert_eq!(code(&agent, Some("Bearer rrrrrrrrrrrrrrrrrrrr")), None);
        assert_eq!(code(&query, Some("Bearer qqqqqqqqqqqqqqqqqqqq")), None);
        assert_eq!(
            code(&agent, Some("Bearer qqqqqqqqqqqqqqqqqqqq")),
            Some(Code::PermissionDenied)
        );
        assert_eq!(
            code(&query, Some("Bearer aaaaaaaaaaaaaaaaaaaa")),
            Some(Code::PermissionDenied)
        );
        assert_eq!(code(&agent, None), Some(Code::Unauthenticated));
        assert_eq!(
            code(&agent, Some("Bearer aaaaaaaaaaaaaaaaaaab")),
            Some(Code::Unauthenticated)
        );
        assert_eq!(code(&agent, Some("Basic abc")), Some(Code::Unauthenticated));
        assert_eq!(failures.load(Ordering::Relaxed), 5);
        Ok(())
    }

    #[test]
    fn without_tokens_everyone_may_call() {
        let open = Authenticator::new(None, Role::Agent, Arc::new(AtomicU64::new(0)));
        assert_eq!(code(&open, None), None);
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, needle) in [
            ("a b c d\n", "line 1"),
            ("a short\n", "shorter"),
            ("a aaaaaaaaaaaaaaaaaaaa root\n", "unknown role"),
            ("a aaaaaaaaaaaaaaaaaaaa\nb aaaaaaaaaaaaaaaaaaaa\n", "twice"),
        ] {
            let message = Tokens::parse(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(needle), "{text:?}: {message}");
        }
    }
}
