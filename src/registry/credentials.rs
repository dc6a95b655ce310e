//! Registry credentials from Docker's `config.json` (what `docker login`
//! writes): `auths.<host>.auth` (base64 `user:password`) or its
//! `username`/`password` fields. Credential helpers (`credsStore`,
//! `credHelpers`) are programs this client does not run: a host that only
//! has one gets a note that the 401 error repeats, never a crash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::RegistryError;
use crate::updates::reference::DOCKER_HUB;

/// The key `docker login` uses for Docker Hub.
pub(crate) const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// Host names that all mean Docker Hub in `auths` keys.
const DOCKER_HUB_ALIASES: [&str; 4] = [
    "index.docker.io",
    "docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The `Authorization: Basic …` header value.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// What `config.json` says about one registry host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Usable credentials, and the `auths` key they came from.
    Found(Credentials, String),
    /// Nothing usable, with why (a helper, an identity token, a bad entry).
    Unusable(String),
    /// Nothing about this host.
    None,
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

/// The credentials of one `config.json`, keyed by normalised host.
#[derive(Debug, Clone, Default)]
pub(crate) struct DockerCredentials {
    /// The file read (or looked for), for messages.
    pub(crate) path: Option<PathBuf>,
    entries: HashMap<String, (String, Result<Credentials, String>)>,
    creds_store: Option<String>,
    helpers: HashMap<String, String>,
}

impl DockerCredentials {
    /// Reads `explicit` (a `config.json` or the directory holding one), or
    /// else `$DOCKER_CONFIG/config.json`, or else `~/.docker/config.json`.
    /// A missing default file means no credentials; a missing explicit file,
    /// unreadable file or invalid JSON is an error.
    pub(crate) fn load(explicit: Option<&Path>) -> Result<DockerCredentials, RegistryError> {
        let (path, required) = match explicit {
            Some(p) if p.is_dir() => (p.join("config.json"), true),
            Some(p) => (p.to_path_buf(), true),
            None => match default_path() {
                Some(p) => (p, false),
                None => return Ok(DockerCredentials::default()),
            },
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(DockerCredentials {
                    path: Some(path),
                    ..DockerCredentials::default()
                });
            }
            Err(e) => {
                return Err(RegistryError::DockerConfig {
                    path: path.display().to_string(),
                    problem: format!("cannot read it: {e}"),
                });
            }
        };
        Self::parse(&text, &path)
    }

    /// Parses the text of a `config.json` read from `path`.
    pub(crate) fn parse(text: &str, path: &Path) -> Result<DockerCredentials, RegistryError> {
        let problem = |problem: String| RegistryError::DockerConfig {
            path: path.display().to_string(),
            problem,
        };
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| problem(format!("not a Docker config.json: {e}")))?;
        if !value.is_object() {
            return Err(problem(
                "not a Docker config.json: expected a JSON object".to_string(),
            ));
        }
        let file: ConfigFile = serde_json::from_value(value)
            .map_err(|e| problem(format!("not a Docker config.json: {e}")))?;
        let mut entries = HashMap::new();
        for (key, entry) in file.auths {
            let host = normalise_key(&key);
            if host.is_empty() {
                continue;
            }
            let creds = decode_entry(&entry, &key);
            // Two keys for one host (`ghcr.io`, `https://ghcr.io`): a usable one wins.
            let keep_existing = matches!(entries.get(&host), Some((_, Ok(_)))) && creds.is_err();
            if !keep_existing {
                entries.insert(host, (key, creds));
            }
        }
        let helpers = file
            .cred_helpers
            .into_iter()
            .map(|(k, v)| (normalise_key(&k), v))
            .collect();
        Ok(DockerCredentials {
            path: Some(path.to_path_buf()),
            entries,
            creds_store: file.creds_store.filter(|s| !s.is_empty()),
            helpers,
        })
    }

    /// What the file says about `registry` (as written in image references:
    /// `docker.io`, `ghcr.io`, `localhost:5000`).
    pub(crate) fn lookup(&self, registry: &str) -> Lookup {
        let registry = registry.to_ascii_lowercase();
        let candidates: Vec<&str> = if is_docker_hub(&registry) {
            DOCKER_HUB_ALIASES.to_vec()
        } else {
            vec![registry.as_str()]
        };
        let mut unusable = None;
        for host in &candidates {
            match self.entries.get(*host) {
                Some((key, Ok(creds))) => return Lookup::Found(creds.clone(), key.clone()),
                Some((_, Err(why))) => {
                    unusable.get_or_insert_with(|| why.clone());
                }
                None => {}
            }
        }
        for host in &candidates {
            if let Some(helper) = self.helpers.get(*host) {
                return Lookup::Unusable(format!(
                    "config.json names the credential helper docker-credential-{helper} for {registry} (credHelpers); upid does not run credential helpers: add an auths entry with \"auth\" (base64 user:password) for {} instead",
                    auth_key_for(&registry)
                ));
            }
        }
        let store = self.creds_store.as_ref().map(|store| format!(
            "config.json keeps credentials in the credential store docker-credential-{store} (credsStore); upid does not run credential helpers: add an auths entry with \"auth\" (base64 user:password) for {} instead",
            auth_key_for(&registry)
        ));
        match (unusable, store) {
            (Some(why), Some(store)) => Lookup::Unusable(format!("{why}; {store}")),
            (Some(why), None) | (None, Some(why)) => Lookup::Unusable(why),
            (None, None) => Lookup::None,
        }
    }
}

/// The `auths` key `docker login` would write for `registry`.
pub(crate) fn auth_key_for(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        registry.to_string()
    }
}

fn is_docker_hub(registry: &str) -> bool {
    registry == DOCKER_HUB || DOCKER_HUB_ALIASES.contains(&registry)
}

fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// `https://index.docker.io/v1/` → `index.docker.io`; `Host:5000/` →
/// `host:5000`, as Docker compares `auths` keys.
fn normalise_key(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or("").to_ascii_lowercase()
}

fn decode_entry(entry: &AuthEntry, key: &str) -> Result<Credentials, String> {
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.trim().is_empty()) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("auths.\"{key}\".auth in config.json is not base64: {e}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("auths.\"{key}\".auth in config.json is not UTF-8 text"))?;
        let (username, password) = text.split_once(':').ok_or_else(|| {
            format!("auths.\"{key}\".auth in config.json is not base64 of user:password")
        })?;
        return Ok(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Credentials {
            username: u.clone(),
            password: p.clone(),
        }),
        _ if entry.identity_token.is_some() => Err(format!(
            "auths.\"{key}\" in config.json holds an identity token (OAuth refresh token), which upid does not use; add \"auth\" (base64 user:password) or a username and password"
        )),
        _ => Err(format!(
            "auths.\"{key}\" in config.json has no \"auth\" and no username/password (docker login with a credential store leaves it empty)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> DockerCredentials {
        match DockerCredentials::parse(text, Path::new("/x/config.json")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn docker_login_file() {
        // `docker login` output: base64("alice:s3cr:et") and Docker Hub's key.
        let c = parse(
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"YWxpY2U6czNjcjpldA=="},
                "127.0.0.1:5000":{"username":"bob","password":"pw"}}}"#,
        );
        assert_eq!(
            c.lookup("docker.io"),
            Lookup::Found(creds("alice", "s3cr:et"), DOCKER_HUB_AUTH_KEY.into())
        );
        assert_eq!(
            c.lookup("127.0.0.1:5000"),
            Lookup::Found(creds("bob", "pw"), "127.0.0.1:5000".into())
        );
        assert_eq!(c.lookup("ghcr.io"), Lookup::None);
        assert_eq!(
            creds("alice", "s3cr:et").basic_header(),
            "Basic YWxpY2U6czNjcjpldA=="
        );
    }

    #[test]
    fn keys_with_scheme_and_path() {
        let c = parse(r#"{"auths":{"https://GHCR.io/v2/":{"auth":"dTpw"}}}"#);
        assert_eq!(
            c.lookup("ghcr.io"),
            Lookup::Found(creds("u", "p"), "https://GHCR.io/v2/".into())
        );
    }

    #[test]
    fn helpers_are_named_not_run() {
        let c = parse(
            r#"{"auths":{"ghcr.io":{}},"credsStore":"desktop","credHelpers":{"gcr.io":"gcloud"}}"#,
        );
        match c.lookup("gcr.io") {
            Lookup::Unusable(why) => assert!(why.contains("docker-credential-gcloud"), "{why}"),
            other => panic!("{other:?}"),
        }
        match c.lookup("ghcr.io") {
            Lookup::Unusable(why) => {
                assert!(why.contains("no \"auth\""), "{why}");
                assert!(why.contains("docker-credential-desktop"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        match c.lookup("quay.io") {
            Lookup::Unusable(why) => assert!(why.contains("docker-credential-desktop"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_entries_are_notes() {
        let c = parse(
            r#"{"auths":{"a.io":{"auth":"!!!"},"b.io":{"auth":"bm9jb2xvbg=="},"c.io":{"identitytoken":"t"}}}"#,
        );
        for (host, needle) in [
            ("a.io", "not base64"),
            ("b.io", "user:password"),
            ("c.io", "identity token"),
        ] {
            match c.lookup(host) {
                Lookup::Unusable(why) => assert!(why.contains(needle), "{host}: {why}"),
                other => panic!("{host}: {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_file_is_an_error() {
        for text in [
            "",
            "{",
            "[]",
            r#"{"auths":[]}"#,
            r#"{"auths":{"x":{"auth":5}}}"#,
        ] {
            match DockerCredentials::parse(text, Path::new("/x/config.json")) {
                Err(RegistryError::DockerConfig { path, .. }) => assert_eq!(path, "/x/config.json"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        // Unknown fields are fine.
        parse(r#"{"auths":{},"HttpHeaders":{"User-Agent":"x"},"psFormat":"table"}"#);
    }
}
