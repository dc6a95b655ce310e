//! Manifests, indexes and image configs as the distribution API serves
//! them: which media types to ask for, picking a platform out of an index,
//! and an image config's `created` time.

use serde::Deserialize;

use super::Platform;

/// OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image manifest, schema 1 (deprecated; never asked for).
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1, signed.
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The `Accept` header for manifests: every type this client understands.
pub(crate) fn manifest_accept() -> String {
    [
        OCI_INDEX,
        OCI_MANIFEST,
        DOCKER_MANIFEST_LIST,
        DOCKER_MANIFEST,
    ]
    .join(", ")
}

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Descriptor {
    #[serde(default, rename = "mediaType")]
    pub(crate) media_type: Option<String>,
    pub(crate) digest: String,
    #[serde(default)]
    pub(crate) platform: Option<PlatformField>,
}

/// `platform` in an index entry.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PlatformField {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Raw {
    #[serde(default, rename = "schemaVersion")]
    schema_version: Option<i64>,
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
}

/// What a manifest body is.
#[derive(Debug, Clone)]
pub(crate) enum Manifest {
    /// An index or manifest list.
    Index(Vec<Descriptor>),
    /// An image (or artifact) manifest with its config descriptor.
    Image(Descriptor),
    /// Docker schema 1: no config blob.
    SchemaV1,
}

/// Parses a manifest body; `content_type` is the response's `Content-Type`.
pub(crate) fn parse_manifest(body: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
    let raw: Raw = json_object(body).map_err(|e| format!("manifest is not JSON: {e}"))?;
    let media_type = raw
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    if raw.schema_version == Some(1)
        || media_type == DOCKER_MANIFEST_V1
        || media_type == DOCKER_MANIFEST_V1_SIGNED
    {
        return Ok(Manifest::SchemaV1);
    }
    match (raw.manifests, raw.config) {
        (Some(list), _) if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST => {
            Ok(Manifest::Index(list))
        }
        (_, Some(config)) => Ok(Manifest::Image(config)),
        _ => Err(format!(
            "manifest of media type {:?} has neither \"manifests\" nor \"config\"",
            media_type
        )),
    }
}

/// `T` from a JSON object (serde would also take an array for a struct).
pub(crate) fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err("expected a JSON object".to_string());
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// The entry of an index for `platform`, or why there is none. An entry
/// without a variant matches any wanted variant when it is the only one of
/// its os/architecture (as `docker pull` does for `arm64`).
pub(crate) fn pick_platform<'a>(
    entries: &'a [Descriptor],
    platform: &Platform,
) -> Result<&'a Descriptor, String> {
    let matching: Vec<&Descriptor> = entries
        .iter()
        .filter(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os.eq_ignore_ascii_case(&platform.os)
                    && p.architecture.eq_ignore_ascii_case(&platform.architecture)
            })
        })
        .collect();
    let exact = matching.iter().find(|d| {
        let variant = d.platform.as_ref().and_then(|p| p.variant.as_deref());
        match (&platform.variant, variant) {
            (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
            (None, _) => true,
            (Some(_), None) => false,
        }
    });
    if let Some(d) = exact {
        return Ok(d);
    }
    if let [only] = matching.as_slice()
        && only
            .platform
            .as_ref()
            .and_then(|p| p.variant.as_ref())
            .is_none()
    {
        return Ok(only);
    }
    let available: Vec<String> = entries
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| match &p.variant {
            Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
            None => format!("{}/{}", p.os, p.architecture),
        })
        .collect();
    Err(format!(
        "the index has no {platform} image (it has: {})",
        if available.is_empty() {
            "no platform entries".to_string()
        } else {
            available.join(", ")
        }
    ))
}

#[derive(Debug, Deserialize)]
struct ImageConfig {
    #[serde(default)]
    created: Option<serde_json::Value>,
}

/// An image config's `created` as unix seconds, or why it is not a
/// release time.
pub(crate) fn config_created(body: &[u8]) -> Result<Result<i64, String>, String> {
    let config: ImageConfig =
        json_object(body).map_err(|e| format!("image config is not JSON: {e}"))?;
    Ok(match config.created {
        None | Some(serde_json::Value::Null) => {
            Err("the image config has no created time".to_string())
        }
        Some(serde_json::Value::String(text)) => match parse_rfc3339_s(&text) {
            Some(s) if s <= 0 => Err(format!(
                "the image config's created time is {text} (the Unix epoch, as reproducible builds write it), not a release time"
            )),
            Some(s) => Ok(s),
            None => Err(format!(
                "the image config's created time {text:?} is not an RFC 3339 time"
            )),
        },
        Some(other) => Err(format!(
            "the image config's created field is {other}, not a time"
        )),
    })
}

/// `2024-01-02T03:04:05.123456789Z` or `…+02:00` as unix seconds (the
/// fraction dropped). `None` for anything else.
pub(crate) fn parse_rfc3339_s(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = b.get(from..from + len)?;
        if !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let year = num(0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let hour = num(11, 2)?;
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let minute = num(14, 2)?;
    let second = num(17, 2)?;
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b.get(i + 3) == Some(&b':') => {
            let hours = num(i + 1, 2)?;
            let minutes = num(i + 4, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let off = hours * 3600 + minutes * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset_s)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `algorithm:encoded` as the OCI image spec allows it.
pub(crate) fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+._-".contains(&c));
    let encoded_ok = !encoded.is_empty()
        && encoded
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"=_-".contains(&c));
    let known_ok = match algorithm {
        "sha256" => encoded.len() == 64 && encoded.bytes().all(is_lower_hex),
        "sha512" => encoded.len() == 128 && encoded.bytes().all(is_lower_hex),
        _ => true,
    };
    algorithm_ok && encoded_ok && known_ok
}

fn is_lower_hex(c: u8) -> bool {
    c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Whether `bytes` hash to `digest`; `None` for algorithms not checked here.
pub(crate) fn verify_digest(digest: &str, bytes: &[u8]) -> Option<bool> {
    if digest.starts_with("sha256:") {
        Some(sha256_digest(bytes) == digest)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_s("1970-01-01T00:00:00Z"), Some(0));
        // `date -u -d 2024-01-02T03:04:05Z +%s`
        assert_eq!(parse_rfc3339_s("2024-01-02T03:04:05Z"), Some(1_704_164_645));
        assert_eq!(
            parse_rfc3339_s("2024-01-02T03:04:05.123456789Z"),
            Some(1_704_164_645)
        );
        assert_eq!(
            parse_rfc3339_s("2024-01-02T05:04:05+02:00"),
            Some(1_704_164_645)
        );
        assert_eq!(
            parse_rfc3339_s("2024-01-01T22:34:05.5-04:30"),
            Some(1_704_164_645)
        );
        assert_eq!(parse_rfc3339_s("2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            "",
            "2024-01-02",
            "2024-01-02T03:04:05",
            "2024-13-02T03:04:05Z",
            "2023-02-29T03:04:05Z",
            "2024-01-02T24:04:05Z",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T03:04:05+0200",
            "2024-01-02T03:04:05Zjunk",
            "２０２４-01-02T03:04:05Z",
            "-024-01-02T03:04:05Z",
        ] {
            assert_eq!(parse_rfc3339_s(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn created_field() {
        assert_eq!(
            config_created(br#"{"created":"2024-01-02T03:04:05Z","architecture":"amd64"}"#),
            Ok(Ok(1_704_164_645))
        );
        for (body, needle) in [
            (&br#"{"architecture":"amd64"}"#[..], "no created"),
            (br#"{"created":null}"#, "no created"),
            (br#"{"created":"1970-01-01T00:00:00Z"}"#, "Unix epoch"),
            (br#"{"created":"yesterday"}"#, "not an RFC 3339"),
            (br#"{"created":5}"#, "not a time"),
        ] {
            match config_created(body) {
                Ok(Err(why)) => assert!(why.contains(needle), "{why}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(config_created(b"junk").is_err());
        assert!(config_created(b"[1]").is_err());
    }

    fn entry(os: &str, arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: Some(OCI_MANIFEST.into()),
            digest: digest.into(),
            platform: Some(PlatformField {
                architecture: arch.into(),
                os: os.into(),
                variant: variant.map(str::to_string),
            }),
        }
    }

    #[test]
    fn platforms() {
        let index = vec![
            entry("linux", "arm", Some("v7"), "a"),
            entry("linux", "amd64", None, "b"),
            entry("linux", "arm64", None, "c"),
            entry("windows", "amd64", None, "d"),
            entry("unknown", "unknown", None, "e"),
        ];
        let pick = |p: &str| match p.parse::<Platform>() {
            Ok(p) => pick_platform(&index, &p).map(|d| d.digest.clone()),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(pick("linux/amd64"), Ok("b".into()));
        assert_eq!(pick("linux/arm64/v8"), Ok("c".into()));
        assert_eq!(pick("linux/arm/v7"), Ok("a".into()));
        assert_eq!(pick("windows/amd64"), Ok("d".into()));
        match pick("linux/s390x") {
            Err(why) => assert!(why.contains("linux/arm/v7, linux/amd64"), "{why}"),
            other => panic!("{other:?}"),
        }
        match pick("linux/arm/v6") {
            Err(why) => assert!(why.contains("no linux/arm/v6"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn manifests() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1","size":1,"platform":{"architecture":"amd64","os":"linux"}}]}"#;
        assert!(matches!(parse_manifest(index, None), Ok(Manifest::Index(l)) if l.len() == 1));
        // A Docker list without mediaType in the body: the header says.
        let list = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_manifest(list, Some(DOCKER_MANIFEST_LIST)),
            Ok(Manifest::Index(_))
        ));
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:2","size":3},"layers":[]}"#;
        assert!(
            matches!(parse_manifest(image, None), Ok(Manifest::Image(c)) if c.digest == "sha256:2")
        );
        let v1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(parse_manifest(v1, None), Ok(Manifest::SchemaV1)));
        for junk in [&b""[..], b"<html>", b"{}", br#"{"config":5}"#, b"null"] {
            assert!(parse_manifest(junk, None).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn digests() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256_digest(b""), empty);
        assert!(valid_digest(empty));
        assert_eq!(verify_digest(empty, b""), Some(true));
        assert_eq!(verify_digest(empty, b"x"), Some(false));
        assert_eq!(verify_digest("sha512:ab", b""), None);
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:abc",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85 ",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(!valid_digest(bad), "{bad:?}");
        }
        assert!(valid_digest("blake3:abc"));
    }
}
