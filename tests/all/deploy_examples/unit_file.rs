//! A systemd unit file, read as systemd reads the parts these tests use:
//! `[Section]` headers, `Key=value` lines (a key may repeat), `#` and `;`
//! comments, and lines continued by a trailing backslash.
use std::path::Path;

/// The settings of one unit file, in order.
pub struct UnitFile {
    /// (section, key, value) for every setting.
    settings: Vec<(String, String, String)>,
}

impl UnitFile {
    /// Reads the unit file at `path`.
    pub fn read(path: &Path) -> UnitFile {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        UnitFile::parse(&text)
    }

    /// Parses the text of a unit file; panics on a line systemd would not
    /// take as a setting, so a typo cannot pass unnoticed.
    pub fn parse(text: &str) -> UnitFile {
        let mut settings = Vec::new();
        let mut section = String::new();
        // A comment is a line of its own: inside a continued setting it is
        // part of the value.
        let lines = super::continued_lines::joined(text, |line, continuing| {
            !continuing && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
        });
        for whole in lines {
            if let Some(name) = whole.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                section = name.to_string();
                continue;
            }
            let (key, value) = whole.split_once('=').unwrap_or_else(|| panic!("not a setting: {whole:?}"));
            assert!(!section.is_empty(), "{key}= comes before any [Section]");
            settings.push((section.clone(), key.trim().to_string(), value.trim().to_string()));
        }
        UnitFile { settings }
    }

    /// Every value given to `key` in `section`, in order.
    pub fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.settings.iter().filter(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v.as_str()).collect()
    }

    /// The value of `key` in `section`, which must be set exactly once.
    pub fn one(&self, section: &str, key: &str) -> &str {
        match self.all(section, key).as_slice() {
            [value] => value,
            values => panic!("expected one {key}= in [{section}], found {values:?}"),
        }
    }

    /// The keys set in `section`.
    pub fn keys(&self, section: &str) -> Vec<&str> {
        self.settings.iter().filter(|(s, _, _)| s == section).map(|(_, k, _)| k.as_str()).collect()
    }
}

/// Splits a command line (`ExecStart=`, `ExecReload=`) into words. Refuses
/// what these tests do not emulate (quotes, escapes, `-`/`+`/`@` prefixes)
/// rather than misread it.
pub fn command_words(line: &str) -> Vec<String> {
    assert!(
        !line.contains(['"', '\'', '\\', ';']),
        "quotes, escapes and ; in {line:?} are not emulated by these tests"
    );
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    let program = words.first().unwrap_or_else(|| panic!("an empty command line"));
    assert!(program.starts_with('/'), "{program}: these tests emulate absolute program paths only");
    words
}

/// A systemd time span such as `30s`, `1min 30s`, `500ms` or `90` (seconds).
pub fn time_span(text: &str) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    for part in text.split_whitespace() {
        let digits = part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len());
        let (number, unit) = part.split_at(digits);
        let number: u64 = number.parse().unwrap_or_else(|_| panic!("not a time span: {text:?}"));
        total += match unit {
            "ms" | "msec" => std::time::Duration::from_millis(number),
            "" | "s" | "sec" => std::time::Duration::from_secs(number),
            "m" | "min" => std::time::Duration::from_secs(number * 60),
            _ => panic!("time unit {unit:?} in {text:?} is not emulated by these tests"),
        };
    }
    total
}
