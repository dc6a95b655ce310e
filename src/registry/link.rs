//! The `Link: <URL>; rel="next"` header that pages a tag list (RFC 8288),
//! and resolving its URL, relative or absolute, against the page's URL.

/// The `rel="next"` target in `Link` header values, when there is one.
pub(crate) fn next_link<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<String> {
    for header in headers {
        // Each link is `<target>; params`, links separated by commas; a
        // comma inside `<...>` belongs to the target.
        let mut rest = header;
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            let close = after.find('>')?;
            let target = after[..close].trim();
            let params_and_more = &after[close + 1..];
            let params_end = params_and_more.find('<').unwrap_or(params_and_more.len());
            let params = &params_and_more[..params_end];
            if has_rel_next(params) && !target.is_empty() {
                return Some(target.to_string());
            }
            rest = &params_and_more[params_end..];
        }
    }
    None
}

fn has_rel_next(params: &str) -> bool {
    params.split([';', ',']).any(|p| {
        let Some((key, value)) = p.split_once('=') else {
            return false;
        };
        key.trim().eq_ignore_ascii_case("rel")
            && value
                .trim()
                .trim_matches('"')
                .split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case("next"))
    })
}

/// `target` resolved against `base` (an absolute `http(s)://host/path?q`):
/// absolute URLs as they are, `/path` on the same scheme and host, anything
/// else relative to the base's directory.
pub(crate) fn resolve(base: &str, target: &str) -> String {
    if target.starts_with("http://") || target.starts_with("https://") {
        return target.to_string();
    }
    let origin_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    let origin = &base[..origin_end];
    if let Some(rest) = target.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        return format!("{scheme}://{rest}");
    }
    if target.starts_with('/') {
        return format!("{origin}{target}");
    }
    let path = &base[origin_end..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    if target.starts_with('?') {
        return format!("{origin}{path}{target}");
    }
    let dir = match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    };
    format!("{origin}{dir}{target}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_and_distribution() {
        // distribution v3 and Docker Hub: relative, with a trailing rel.
        assert_eq!(
            next_link([r#"</v2/library/nginx/tags/list?last=1.19&n=100>; rel="next""#]),
            Some("/v2/library/nginx/tags/list?last=1.19&n=100".into())
        );
        // Absolute (some cloud registries), unquoted rel, odd spacing.
        assert_eq!(
            next_link(["<https://r.example/v2/a/tags/list?last=b,c&n=2>;rel=next"]),
            Some("https://r.example/v2/a/tags/list?last=b,c&n=2".into())
        );
        // Several links, the next one second; several header values.
        assert_eq!(
            next_link([
                r#"</x?p=1>; rel="prev", </x?p=3>; rel="next""#,
                r#"</y>; rel="last""#
            ]),
            Some("/x?p=3".into())
        );
        assert_eq!(
            next_link([
                "</a>; rel=\"prev\"",
                "</b>; title=\"x\"; rel=\"first next\""
            ]),
            Some("/b".into())
        );
    }

    #[test]
    fn no_next() {
        for h in [
            "",
            "garbage",
            "<",
            "</a",
            "<>; rel=next",
            "</a>; rel=\"prev\"",
            "</a>; relx=next",
        ] {
            assert_eq!(next_link([h]), None, "{h:?}");
        }
    }

    #[test]
    fn resolving() {
        let base = "http://127.0.0.1:5000/v2/org/app/tags/list?n=2";
        assert_eq!(
            resolve(base, "/v2/org/app/tags/list?last=b&n=2"),
            "http://127.0.0.1:5000/v2/org/app/tags/list?last=b&n=2"
        );
        assert_eq!(
            resolve(base, "https://other/v2/x?last=b"),
            "https://other/v2/x?last=b"
        );
        assert_eq!(
            resolve(base, "?last=b&n=2"),
            "http://127.0.0.1:5000/v2/org/app/tags/list?last=b&n=2"
        );
        assert_eq!(
            resolve(base, "list?last=b"),
            "http://127.0.0.1:5000/v2/org/app/tags/list?last=b"
        );
        assert_eq!(resolve(base, "//cdn/x"), "http://cdn/x");
        assert_eq!(resolve("https://h", "/a"), "https://h/a");
    }
}
