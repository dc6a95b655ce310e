//! `WWW-Authenticate` challenges (RFC 7235) as registries send them:
//! `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"`
//! or `Basic realm="Registry Realm"`, several in one header possibly.

use std::collections::HashMap;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Get a token from `realm`, then send `Authorization: Bearer TOKEN`.
    Bearer {
        /// The token service URL.
        realm: String,
        /// The `service` parameter to pass to it.
        service: Option<String>,
        /// The `scope` the registry wants (`repository:NAME:pull`).
        scope: Option<String>,
        /// `error="insufficient_scope"` and the like.
        error: Option<String>,
    },
    /// Send `Authorization: Basic base64(user:password)`.
    Basic,
    /// A scheme this client does not speak (lower-cased), or a Bearer
    /// challenge without a realm.
    Other(String),
}

/// Every challenge in the header values, in order. Never fails: what cannot
/// be understood becomes `Other`.
pub(crate) fn parse_challenges<'a>(headers: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for header in headers {
        for (scheme, params) in split_challenges(header) {
            out.push(build(&scheme, params));
        }
    }
    out
}

fn build(scheme: &str, mut params: HashMap<String, String>) -> Challenge {
    match scheme {
        "bearer" => match params.remove("realm") {
            Some(realm) if !realm.is_empty() => Challenge::Bearer {
                realm,
                service: params.remove("service").filter(|s| !s.is_empty()),
                scope: params.remove("scope").filter(|s| !s.is_empty()),
                error: params.remove("error"),
            },
            _ => Challenge::Other("bearer without realm".to_string()),
        },
        "basic" => Challenge::Basic,
        other => Challenge::Other(other.to_string()),
    }
}

/// A small tokenizer: `scheme param=value, param="quoted, value", scheme2 …`.
/// A comma followed by `token` and then whitespace or the end (no `=`) starts
/// a new challenge.
fn split_challenges(header: &str) -> Vec<(String, HashMap<String, String>)> {
    let chars: Vec<char> = header.chars().collect();
    let mut i = 0;
    let mut out: Vec<(String, HashMap<String, String>)> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && (chars[*i].is_whitespace() || chars[*i] == ',') {
            *i += 1;
        }
    };
    let read_token = |i: &mut usize| -> String {
        let start = *i;
        while *i < chars.len() && is_token_char(chars[*i]) {
            *i += 1;
        }
        chars[start..*i].iter().collect()
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        let token = read_token(&mut i);
        if token.is_empty() {
            // A character that cannot start anything: skip it.
            i += 1;
            continue;
        }
        // Look past spaces: `=` means a parameter of the current challenge.
        let mut j = i;
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        if j < chars.len() && chars[j] == '=' && !out.is_empty() {
            i = j + 1;
            while i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            let value = if i < chars.len() && chars[i] == '"' {
                i += 1;
                let mut value = String::new();
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                i += 1; // the closing quote (or past the end)
                value
            } else {
                // Unquoted: up to the next comma or space (realms with `:`
                // and `/` are sent unquoted by some registries).
                let start = i;
                while i < chars.len() && chars[i] != ',' && !chars[i].is_whitespace() {
                    i += 1;
                }
                chars[start..i].iter().collect()
            };
            if let Some((_, params)) = out.last_mut() {
                params.insert(token.to_ascii_lowercase(), value);
            }
        } else {
            out.push((token.to_ascii_lowercase(), HashMap::new()));
        }
    }
    out
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~/".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.to_string(),
            service: service.map(str::to_string),
            scope: scope.map(str::to_string),
            error: None,
        }
    }

    /// Verbatim from registry-1.docker.io for an anonymous tags/list.
    #[test]
    fn docker_hub() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#;
        assert_eq!(
            parse_challenges([h]),
            vec![bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/nginx:pull")
            )]
        );
    }

    /// ghcr.io's form, and a scope with two actions (a comma inside quotes).
    #[test]
    fn ghcr_and_quoted_comma() {
        let h = r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:org/app:pull,push""#;
        assert_eq!(
            parse_challenges([h]),
            vec![bearer(
                "https://ghcr.io/token",
                Some("ghcr.io"),
                Some("repository:org/app:pull,push")
            )]
        );
    }

    /// Docker Hub with a token lacking the scope.
    #[test]
    fn insufficient_scope() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/missing:pull",error="insufficient_scope""#;
        match &parse_challenges([h])[..] {
            [Challenge::Bearer { error, scope, .. }] => {
                assert_eq!(error.as_deref(), Some("insufficient_scope"));
                assert_eq!(scope.as_deref(), Some("repository:library/missing:pull"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Debian's docker-registry with htpasswd auth sends this.
    #[test]
    fn basic() {
        assert_eq!(
            parse_challenges([r#"Basic realm="Registry Realm""#]),
            vec![Challenge::Basic]
        );
        assert_eq!(parse_challenges(["basic"]), vec![Challenge::Basic]);
    }

    /// Quay, ECR and GitLab variants: spaces after commas, unquoted values,
    /// lower-case scheme, parameter order changed, no scope.
    #[test]
    fn variants() {
        let h = r#"bearer service="quay.io", realm="https://quay.io/v2/auth""#;
        assert_eq!(
            parse_challenges([h]),
            vec![bearer("https://quay.io/v2/auth", Some("quay.io"), None)]
        );
        let h = "Bearer realm=https://gitlab.example.com/jwt/auth,service=container_registry";
        assert_eq!(
            parse_challenges([h]),
            vec![bearer(
                "https://gitlab.example.com/jwt/auth",
                Some("container_registry"),
                None
            )]
        );
    }

    /// Two challenges in one header and in two headers.
    #[test]
    fn several() {
        let h = r#"Basic realm="x", Bearer realm="https://t/token",service="s""#;
        assert_eq!(
            parse_challenges([h]),
            vec![Challenge::Basic, bearer("https://t/token", Some("s"), None)]
        );
        assert_eq!(
            parse_challenges([r#"Negotiate"#, r#"Bearer realm="https://t""#]),
            vec![
                Challenge::Other("negotiate".into()),
                bearer("https://t", None, None)
            ]
        );
    }

    /// Escapes inside quoted strings.
    #[test]
    fn escapes() {
        let h = r#"Bearer realm="https://t/a\"b",service="s\\v""#;
        assert_eq!(
            parse_challenges([h]),
            vec![bearer("https://t/a\"b", Some("s\\v"), None)]
        );
    }

    /// Garbage never panics and never yields a Bearer without a realm.
    #[test]
    fn garbage() {
        for h in [
            "",
            ",,,",
            "=",
            "Bearer",
            "Bearer realm=",
            r#"Bearer realm=""#,
            r#"Bearer realm="unterminated"#,
            "\u{0}\u{ff}ä Bearer =,=\"",
            "==== realm=\"x\"",
        ] {
            for c in parse_challenges([h]) {
                if let Challenge::Bearer { realm, .. } = c {
                    assert!(!realm.is_empty(), "{h:?}");
                }
            }
        }
        assert_eq!(
            parse_challenges(["Bearer"]),
            vec![Challenge::Other("bearer without realm".into())]
        );
        assert_eq!(
            parse_challenges([r#"Bearer realm="unterminated"#]),
            vec![bearer("unterminated", None, None)]
        );
    }
}
