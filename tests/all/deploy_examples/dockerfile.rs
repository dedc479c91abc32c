//! A Dockerfile read into build stages and their instructions, enough to
//! check what the image ships without building it.
use std::path::Path;

/// One `FROM` and the instructions after it.
pub struct Stage {
    /// The name after `AS`, if any.
    pub name: Option<String>,
    /// (instruction in capitals, the rest of its line), continuation lines joined.
    pub instructions: Vec<(String, String)>,
}

impl Stage {
    /// The rest of every `instruction` line of this stage.
    pub fn all(&self, instruction: &str) -> Vec<&str> {
        self.instructions.iter().filter(|(i, _)| i == instruction).map(|(_, rest)| rest.as_str()).collect()
    }
}

/// Reads the Dockerfile at `path` into its stages, in order.
pub fn read(path: &Path) -> Vec<Stage> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut stages: Vec<Stage> = Vec::new();
    // Comment lines are left out even inside a continued instruction, as
    // Docker does.
    let lines = super::continued_lines::joined(&text, |line, continuing| {
        line.starts_with('#') || (!continuing && line.is_empty())
    });
    for whole in lines {
        let (instruction, rest) = whole.split_once(char::is_whitespace).unwrap_or((&whole, ""));
        let (instruction, rest) = (instruction.to_ascii_uppercase(), rest.trim().to_string());
        if instruction == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage { name, instructions: Vec::new() });
        } else {
            let stage = stages.last_mut().unwrap_or_else(|| panic!("{instruction} before any FROM"));
            stage.instructions.push((instruction, rest));
        }
    }
    stages
}

/// A `COPY` line's `--from` stage, sources and destination.
pub struct Copy<'a> {
    pub from: Option<&'a str>,
    pub sources: Vec<&'a str>,
    pub destination: &'a str,
}

/// Parses the rest of a `COPY` line (in its shell form).
pub fn copy(rest: &str) -> Copy<'_> {
    let mut from = None;
    let mut paths = Vec::new();
    for word in rest.split_whitespace() {
        match word.strip_prefix("--") {
            Some(flag) => from = flag.strip_prefix("from=").or(from),
            None => paths.push(word),
        }
    }
    let destination = paths.pop().unwrap_or_else(|| panic!("COPY {rest} has no destination"));
    Copy { from, sources: paths, destination }
}
