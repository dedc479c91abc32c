//! Lines continued by a trailing backslash, as Dockerfiles and systemd unit
//! files both write them.

/// The logical lines of `text`: each physical line trimmed, and one ending
/// in a backslash joined to the next with a space. `skip(line, continuing)`
/// leaves a trimmed physical line out, `continuing` saying whether it would
/// continue a line. Panics if the text ends in a continuation.
pub fn joined(text: &str, skip: impl Fn(&str, bool) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if skip(line, !pending.is_empty()) {
            continue;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        lines.push(std::mem::take(&mut pending) + line);
    }
    assert!(pending.is_empty(), "the last line ends with a backslash");
    lines
}
