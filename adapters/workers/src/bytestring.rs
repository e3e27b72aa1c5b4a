//! Header values across the JS boundary. Pure, so it is tested natively.
//!
//! The Fetch standard makes a header value a ByteString (each byte one character, U+0000 to
//! U+00FF), but workerd does not: it decodes the bytes it receives as UTF-8, a byte that is not
//! valid UTF-8 becoming U+FFFD (workerd issue 6927), and sends a header string as its UTF-8
//! bytes. So on Workers a value's JS string is the UTF-8 text of its bytes, both ways: bytes
//! that are valid UTF-8 (any ASCII value, and UTF-8 text such as a file name in a
//! `Content-Disposition`) cross unchanged; other bytes cannot cross at all, and become U+FFFD as
//! workerd's own reading makes them. (Mapping each byte to one character instead, as a
//! ByteString would, sent every byte from 0x80 up as two: `tests/e2e/cases.rs`,
//! `header_bytes_pass_unchanged`.)

use http::{HeaderMap, HeaderName, HeaderValue};
use std::borrow::Cow;

/// Room left in a header map read from JS for the headers the gateway adds to it, so that adding
/// them does not make the map grow ([`portcullis_core::HEADER_ROOM`]).
pub const ROOM: usize = portcullis_core::HEADER_ROOM;

/// The string JS needs for a header value's bytes: borrowed when they are UTF-8 (always, but for
/// bytes an upstream or a config sent that no Workers header can hold; those become U+FFFD).
pub fn to_js(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The bytes of a header value JS gave as a string.
pub fn from_js(text: &str) -> &[u8] {
    text.as_bytes()
}

/// A header map from a JS `Headers` flattened into one string: each name and each value followed
/// by NUL, the last one not (made in JS by `crate::host::header_map`: one crossing of the JS
/// boundary instead of three per header). NUL can be in neither: names are tokens, and `Headers`
/// refuses NUL in a value. Values come back as the bytes workerd read ([`from_js`]); an entry that
/// is not a valid name and value (which `Headers` never holds) is left out. Order and repeated
/// names are kept, with [`ROOM`] to spare.
pub fn header_map(flat: &str) -> HeaderMap {
    if flat.is_empty() {
        return HeaderMap::with_capacity(ROOM);
    }
    let pairs = flat.bytes().filter(|&b| b == 0).count().div_ceil(2);
    let mut map = HeaderMap::with_capacity(pairs + ROOM);
    let mut parts = flat.split('\0');
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        let value = HeaderValue::from_bytes(from_js(value));
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), value) {
            map.append(name, value);
        }
    }
    map
}

/// Headers flattened into one string for JS, the reverse of [`header_map`]: each name and each
/// value ([`to_js`]) followed by NUL, the last one not; `leave_out` (if any) is left out. JS makes
/// the `Headers` object from it in one crossing (`crate::host::js_headers`) instead of two strings
/// per header.
pub fn flatten(headers: &HeaderMap, leave_out: Option<&HeaderName>) -> String {
    let mut flat = String::with_capacity(512);
    for (name, value) in headers {
        if Some(name) == leave_out {
            continue;
        }
        if !flat.is_empty() {
            flat.push('\0');
        }
        flat.push_str(name.as_str());
        flat.push('\0');
        flat.push_str(&to_js(value.as_bytes()));
    }
    flat
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_values_cross_unchanged_both_ways() {
        assert!(matches!(to_js(b"max-age=60"), Cow::Borrowed("max-age=60")));
        assert_eq!(from_js("max-age=60"), b"max-age=60");
        assert_eq!(to_js(b""), "");
        let text = "attachment; filename=\"caf\u{e9}.txt\"";
        assert!(matches!(to_js(text.as_bytes()), Cow::Borrowed(t) if t == text));
        assert_eq!(from_js(&to_js(text.as_bytes())), text.as_bytes());
    }

    #[test]
    fn bytes_that_are_not_utf8_become_the_replacement_character() {
        // what workerd itself makes of them on the way in
        assert_eq!(to_js(b"caf\xe9"), "caf\u{fffd}");
        assert_eq!(from_js("caf\u{fffd}"), b"caf\xef\xbf\xbd");
    }

    #[test]
    fn a_flattened_headers_object_becomes_a_header_map_in_order() {
        let map = header_map(
            "accept\0*/*\0set-cookie\0a=1\0set-cookie\0b=2\0x-empty\0\0x-text\0caf\u{e9}",
        );
        let got: Vec<(&str, &[u8])> = map
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(
            got,
            [
                ("accept", &b"*/*"[..]),
                ("set-cookie", b"a=1"),
                ("set-cookie", b"b=2"),
                ("x-empty", b""),
                ("x-text", "caf\u{e9}".as_bytes()),
            ]
        );
        assert!(map.capacity() >= 5 + ROOM);
    }

    #[test]
    fn a_header_map_flattens_in_order_and_reads_back_the_same() {
        let mut map = HeaderMap::new();
        map.append("accept", HeaderValue::from_static("*/*"));
        map.append("set-cookie", HeaderValue::from_static("a=1"));
        map.append("set-cookie", HeaderValue::from_static("b=2"));
        map.append("x-empty", HeaderValue::from_static(""));
        map.append("x-latin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let flat = flatten(&map, None);
        assert_eq!(
            flat,
            "accept\0*/*\0set-cookie\0a=1\0set-cookie\0b=2\0x-empty\0\0x-latin\0caf\u{fffd}"
        );
        // what cannot cross comes back as workerd makes it, the rest unchanged
        map.insert("x-latin", HeaderValue::from_str("caf\u{fffd}").unwrap());
        assert_eq!(header_map(&flat), map);
        assert_eq!(flatten(&HeaderMap::new(), None), "");
        // left out wherever it is, all its values
        let accept = HeaderName::from_static("accept");
        assert_eq!(
            flatten(&map, Some(&HeaderName::from_static("set-cookie"))),
            "accept\0*/*\0x-empty\0\0x-latin\0caf\u{fffd}"
        );
        assert_eq!(
            flatten(&map, Some(&accept)),
            "set-cookie\0a=1\0set-cookie\0b=2\0x-empty\0\0x-latin\0caf\u{fffd}"
        );
    }

    #[test]
    fn entries_no_map_can_hold_are_left_out() {
        assert!(header_map("").is_empty());
        assert!(header_map("").capacity() >= ROOM);
        // a name that is no token, a value with a control character, and a name without a value
        let map = header_map("bad name\0v\0x-b\0a\u{1}b\0ok\0yes\0x-dangling");
        let got: Vec<&str> = map.keys().map(|n| n.as_str()).collect();
        assert_eq!(got, ["ok"]);
        assert_eq!(map["ok"], "yes");
    }
}
