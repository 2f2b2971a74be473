//! Serving the browser SDK first-party (the files `sdk-js` builds into `dist/`) under
//! `collect.sdk.path`: which names may be asked for, their content types, and cache headers.
//! Where the bytes come from (a folder for `braid serve`, the static assets binding for the
//! Worker) is the platform's business: it reads `SdkRead::name` and answers with
//! `SdkRead::finish`.

use crate::http::HttpResponse;

/// Content-addressed files (`braid-<12 hex>.wasm`) never change: a year, immutable. Other
/// names (`braid.js`, the snippet) are entry points that a new build replaces: five minutes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const SHORT: &str = "public, max-age=300";

/// The content type of an SDK file, or `None` for a name that is not one: only plain names
/// (no folders, no dot files) with a known extension are served.
pub(crate) fn sdk_content_type(name: &str) -> Option<&'static str> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !plain {
        return None;
    }
    let (_, extension) = name.rsplit_once('.')?;
    match extension {
        "js" | "mjs" => Some("text/javascript; charset=utf-8"),
        "wasm" => Some("application/wasm"),
        "ts" => Some("text/plain; charset=utf-8"),
        "json" => Some("application/json"),
        _ => None,
    }
}

fn is_content_addressed(name: &str) -> bool {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    stem.rsplit_once('-')
        .is_some_and(|(_, hash)| hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The answer to `GET`/`HEAD` of SDK file `name` whose bytes are `file` (`None`: not found).
/// Any origin may load the files (module scripts and wasm are fetched with CORS).
pub(crate) fn sdk_response(method: &str, name: &str, file: Option<Vec<u8>>) -> HttpResponse {
    let plain = |status: u16, text: &str| HttpResponse {
        status,
        headers: vec![("content-type", "text/plain; charset=utf-8".to_owned())],
        body: text.as_bytes().to_vec(),
    };
    if method != "GET" && method != "HEAD" {
        let mut response = plain(405, "method not allowed: the SDK files are read with GET");
        response.headers.push(("allow", "GET, HEAD".to_owned()));
        return response;
    }
    let (Some(content_type), Some(bytes)) = (sdk_content_type(name), file) else {
        return plain(404, "no such SDK file");
    };
    let cache = if is_content_addressed(name) {
        IMMUTABLE
    } else {
        SHORT
    };
    HttpResponse {
        status: 200,
        headers: vec![
            ("content-type", content_type.to_owned()),
            ("cache-control", cache.to_owned()),
            ("access-control-allow-origin", "*".to_owned()),
            ("x-content-type-options", "nosniff".to_owned()),
        ],
        body: if method == "HEAD" { Vec::new() } else { bytes },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_with_known_types_are_served() {
        assert_eq!(
            sdk_content_type("braid.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            sdk_content_type("braid-0a1b2c3d4e5f.wasm"),
            Some("application/wasm")
        );
        for bad in [
            "",
            ".env",
            "../secret.js",
            "a/b.js",
            "braid.exe",
            "noextension",
            "x%2f.js",
        ] {
            assert_eq!(sdk_content_type(bad), None, "{bad}");
        }
    }

    #[test]
    fn hashed_files_are_immutable_and_entry_points_short_lived() {
        let wasm = sdk_response(
            "GET",
            "braid-0a1b2c3d4e5f.wasm",
            Some(vec![0, 97, 115, 109]),
        );
        assert_eq!(wasm.status, 200);
        assert_eq!(wasm.header("cache-control"), Some(IMMUTABLE));
        assert_eq!(wasm.header("content-type"), Some("application/wasm"));
        assert_eq!(wasm.header("access-control-allow-origin"), Some("*"));
        assert_eq!(wasm.body, [0, 97, 115, 109]);
        let entry = sdk_response("HEAD", "braid.js", Some(b"export{}".to_vec()));
        assert_eq!(entry.header("cache-control"), Some(SHORT));
        assert!(entry.body.is_empty());
    }

    #[test]
    fn missing_files_and_other_methods_are_refused() {
        assert_eq!(sdk_response("GET", "braid.js", None).status, 404);
        assert_eq!(sdk_response("GET", "../x.js", Some(vec![1])).status, 404);
        let post = sdk_response("POST", "braid.js", Some(vec![1]));
        assert_eq!(post.status, 405);
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
    }
}
