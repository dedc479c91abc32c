//! `host new`: a handler project of its own, outside any repository, in
//! Rust, C, Python or JavaScript: the WIT package this host serves, a
//! handler that welcomes each connection (counting it in the store) and
//! echoes, a `build` script that writes `NAME.wasm` beside it, a `host
//! test` script and a README. The templates are in `host/templates/`.
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A language `host new` writes a handler in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    C,
    Python,
    Js,
}

/// A file of a template: where it goes in the project, its text (with
/// `{{name}}`, `{{crate}}` and `{{host}}` to fill in) and whether it runs.
struct TemplateFile {
    path: &'static str,
    text: &'static [u8],
    executable: bool,
}

const fn file(path: &'static str, text: &'static [u8], executable: bool) -> TemplateFile {
    TemplateFile { path, text, executable }
}

/// Every language's files beside its handler.
const COMMON: [TemplateFile; 2] = [
    file("tests/welcome.evt", include_bytes!("../../templates/common/tests/welcome.evt"), false),
    file(".gitignore", include_bytes!("../../templates/common/gitignore"), false),
];

const RUST: [TemplateFile; 4] = [
    file("Cargo.toml", include_bytes!("../../templates/rust/Cargo.toml"), false),
    file("src/lib.rs", include_bytes!("../../templates/rust/src/lib.rs"), false),
    file("build", include_bytes!("../../templates/rust/build"), true),
    file("README.md", include_bytes!("../../templates/rust/README.md"), false),
];

const C: [TemplateFile; 6] = [
    file("{{name}}.c", include_bytes!("../../templates/c/handler.c"), false),
    file("build", include_bytes!("../../templates/c/build"), true),
    file("README.md", include_bytes!("../../templates/c/README.md"), false),
    // The C bindings of the world, as `wit-bindgen c` makes them (checked
    // against wit/ by the tests).
    file("bindings/handler.c", include_bytes!("../../../guest/c/bindings/handler.c"), false),
    file("bindings/handler.h", include_bytes!("../../../guest/c/bindings/handler.h"), false),
    file(
        "bindings/handler_component_type.o",
        include_bytes!("../../../guest/c/bindings/handler_component_type.o"),
        false,
    ),
];

const PYTHON: [TemplateFile; 3] = [
    file("app.py", include_bytes!("../../templates/python/app.py"), false),
    file("build", include_bytes!("../../templates/python/build"), true),
    file("README.md", include_bytes!("../../templates/python/README.md"), false),
];

const JS: [TemplateFile; 4] = [
    file("{{name}}.js", include_bytes!("../../templates/js/handler.js"), false),
    file("package.json", include_bytes!("../../templates/js/package.json"), false),
    file("build", include_bytes!("../../templates/js/build"), true),
    file("README.md", include_bytes!("../../templates/js/README.md"), false),
];

/// Whether `name` may name a project: it names the folder, the component
/// file, the crate or package, and the store bucket the handler opens.
fn valid_name(name: &str) -> bool {
    let first = name.bytes().next();
    first.is_some_and(|b| b.is_ascii_lowercase())
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-')
}

/// Writes the project `name` in `lang` into `parent/name`, which must not
/// exist yet; returns its folder. `host` is the host binary the C build
/// runs (`host component`).
pub fn create(name: &str, lang: Lang, parent: &Path, host: &Path) -> anyhow::Result<PathBuf> {
    if !valid_name(name) {
        anyhow::bail!(
            "{name:?} cannot name a handler: use lowercase letters, digits and '-', starting with a letter \
             (it names the folder, the .wasm file and the store bucket)"
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        anyhow::bail!("{} exists already: choose another name or folder", dir.display());
    }
    let files: &[TemplateFile] = match lang {
        Lang::Rust => &RUST,
        Lang::C => &C,
        Lang::Python => &PYTHON,
        Lang::Js => &JS,
    };
    let host = host.to_string_lossy();
    let fill = |text: &str| {
        text.replace("{{name}}", name).replace("{{crate}}", &name.replace('-', "_")).replace("{{host}}", &host)
    };
    for template in COMMON.iter().chain(files) {
        let path = dir.join(fill(template.path));
        std::fs::create_dir_all(path.parent().expect("a file in a folder"))
            .with_context(|| format!("cannot make {}", dir.display()))?;
        let bytes = match std::str::from_utf8(template.text) {
            Ok(text) => fill(text).into_bytes(),
            // The bindings' object file is written as it is.
            Err(_) => template.text.to_vec(),
        };
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        if template.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", path.display()))?;
        }
    }
    crate::wasm::contract::write_wit(&dir.join("wit"))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names become folders, files, crates and buckets: plain ones only.
    #[test]
    fn names_are_checked() {
        for good in ["hello", "line-counter", "a1"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Hello", "1st", "a_b", "a.b", "../x", "a-", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    /// Every language's project has its handler, a build script that runs,
    /// the WIT package and the shared test script, with the name filled in.
    #[test]
    fn projects_are_written_with_the_name_filled_in() {
        let parent = std::env::temp_dir().join(format!("evconn-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        for (lang, handler) in
            [(Lang::Rust, "src/lib.rs"), (Lang::C, "my-app.c"), (Lang::Python, "app.py"), (Lang::Js, "my-app.js")]
        {
            let dir = create("my-app", lang, &parent.join(format!("{lang:?}")), Path::new("/opt/host")).unwrap();
            let text = std::fs::read_to_string(dir.join(handler)).unwrap();
            assert!(text.contains("\"my-app\"") || text.contains("'my-app'"), "{lang:?}: the bucket is named");
            assert!(!text.contains("{{"), "{lang:?}: every placeholder is filled");
            let build = dir.join("build");
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&build).unwrap().permissions().mode() & 0o111, 0o111);
            assert!(dir.join("wit/world.wit").is_file() && dir.join("wit/deps/keyvalue/store.wit").is_file());
            assert!(std::fs::read_to_string(dir.join("tests/welcome.evt")).unwrap().contains("welcome, visitor 2"));
            assert!(create("my-app", lang, &parent.join(format!("{lang:?}")), Path::new("/opt/host")).is_err());
        }
        let c_build = std::fs::read_to_string(parent.join("C/my-app/build")).unwrap();
        assert!(c_build.contains("${HOST:-/opt/host}"), "{c_build}");
        let _ = std::fs::remove_dir_all(&parent);
    }
}
