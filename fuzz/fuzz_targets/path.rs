//! Path normalization: any request path is refused or normalized. What comes out starts with
//! `/`, has no empty segment and no dot segment (with or without `;` parameters), and
//! normalizing it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::phase::validate::normalize_path;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = normalize_path(raw) else {
        return;
    };
    assert!(path.starts_with('/'), "{raw:?} normalized to {path:?}");
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(!seg.is_empty() || last, "{raw:?} → {path:?}: empty segment");
        let name = seg.split(';').next().unwrap_or("");
        assert!(
            name != "." && name != "..",
            "{raw:?} → {path:?}: dot segment"
        );
        assert!(!seg.contains('\\'), "{raw:?} → {path:?}: backslash");
    }
    let again = normalize_path(&path).expect("a normalized path is accepted");
    assert_eq!(again, path, "normalizing {raw:?} twice changed it");
});
