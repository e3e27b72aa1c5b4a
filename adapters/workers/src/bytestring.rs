//! Header values across the JS boundary. Pure, so it is tested natively.
//!
//! A JS `Headers` object holds ByteStrings: every character is one byte, U+0000 to U+00FF.
//! A Rust `&str` reaches JS through UTF-8, so a value's bytes are handed over as the string whose
//! characters are those bytes (Latin-1), and read back the same way. UTF-8 text or
//! `from_utf8_lossy` would send other bytes than the ones the gateway decided on: a byte 0x80 to
//! 0xFF would become U+FFFD, or two bytes where there was one.

use std::borrow::Cow;

/// The string JS needs for a header value's bytes. Borrowed when they are all ASCII (the usual
/// case); a byte from 0x80 up becomes the character with its number.
pub fn to_js(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) if bytes.is_ascii() => Cow::Borrowed(text),
        _ => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// The bytes of a header value JS gave as a string; `None` when a character is above U+00FF,
/// which a ByteString cannot hold.
pub fn from_js(text: &str) -> Option<Cow<'_, [u8]>> {
    if text.is_ascii() {
        return Some(Cow::Borrowed(text.as_bytes()));
    }
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_values_pass_borrowed_both_ways() {
        assert!(matches!(to_js(b"max-age=60"), Cow::Borrowed("max-age=60")));
        assert!(matches!(
            from_js("max-age=60"),
            Some(Cow::Borrowed(b"max-age=60"))
        ));
        assert_eq!(to_js(b""), "");
    }

    #[test]
    fn high_bytes_map_to_the_character_with_their_number() {
        assert_eq!(to_js(b"caf\xe9"), "caf\u{e9}");
        assert_eq!(to_js(b"\x80\xff"), "\u{80}\u{ff}");
        // UTF-8 bytes are still bytes: each one becomes its own character
        assert_eq!(to_js("é".as_bytes()), "\u{c3}\u{a9}");
    }

    #[test]
    fn every_byte_survives_the_round_trip() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(from_js(&to_js(&all)).as_deref(), Some(&all[..]));
    }

    #[test]
    fn characters_beyond_latin1_are_refused() {
        assert_eq!(from_js("\u{100}"), None);
        assert_eq!(from_js("ok \u{20ac}"), None);
        assert_eq!(from_js("\u{e9}").as_deref(), Some(&b"\xe9"[..]));
    }
}
