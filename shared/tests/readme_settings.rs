//! README's configuration table is the settings table (`shared/src/config/vars.rs`), rendered.
//! When this fails, paste the printed table between README's `settings-table` markers.

#![allow(clippy::unwrap_used)] // Helpers outside #[test] fns are test code too.

const BEGIN: &str = "<!-- settings-table:begin (generated from shared/src/config/vars.rs) -->\n";
const END: &str = "<!-- settings-table:end -->";

#[test]
fn the_readme_configuration_table_is_the_settings_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md beside the workspace root");
    let start = readme
        .find(BEGIN)
        .expect("README has the settings-table begin marker")
        + BEGIN.len();
    let end = readme[start..]
        .find(END)
        .expect("README has the end marker")
        + start;
    let expected = logrelay_core::config::vars::markdown_table();
    assert!(
        readme[start..end] == expected,
        "README's table differs from the settings table; it should be:\n{expected}"
    );
}

#[test]
fn every_variable_is_listed_once() {
    let mut names: Vec<&str> = logrelay_core::config::vars::VARS
        .iter()
        .map(|var| var.name)
        .collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), count);
}
