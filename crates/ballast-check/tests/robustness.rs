//! No input panics the configuration path: random text, and random damage to real examples,
//! go through load, every rule and rendering. (The cargo-fuzz target in `fuzz/` does the same
//! with coverage guidance; this runs in every test run.)

use proptest::prelude::*;

use ballast_core::{SourceFile, load_source};

fn exercise(text: &str) {
    match load_source(SourceFile::new("p.toml", text)) {
        Ok(loaded) => {
            for f in ballast_check::check(&loaded) {
                let rendered = f.to_diagnostic().render(Some(&loaded.source));
                assert!(rendered.contains(f.rule));
            }
        }
        Err(e) => {
            assert!(!e.diagnostics.is_empty());
            assert!(e.render().contains("error"));
        }
    }
}

fn examples() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        exercise(&text);
    }

    #[test]
    fn random_toml_like_text_never_panics(
        text in "([a-z_\\.\\[\\]]{1,12}( = (\"[0-9a-z:\\. ]{0,12}\"|-?[0-9]{1,22}|true|\\{ [a-z]+ = [0-9]+ \\}))?\n){0,30}"
    ) {
        exercise(&text);
    }

    #[test]
    fn damaged_examples_never_panic(
        which in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        len in 0usize..200,
        noise in "\\PC{0,20}",
        absurd in prop::sample::select(vec!["0", "-1", "4294967296", "1e308", "nan", "\"\"", "\"0s\"", "\"999999h\"", "[]", "{}"]),
    ) {
        let all = examples();
        let text = &all[which.index(all.len())];
        let mut at = cut.index(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + len).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        // Cut a range and insert noise.
        exercise(&format!("{}{}{}", &text[..at], noise, &text[end..]));
        // Replace one value with something absurd.
        let target = at % text.lines().count().max(1);
        let replaced: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| match l.split_once(" = ") {
                Some((k, _)) if i == target => format!("{k} = {absurd}\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        exercise(&replaced);
    }
}
