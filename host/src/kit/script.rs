//! Conversation scripts (`.evt` files): one step a line, parsed and checked
//! before anything runs. The format is described in `docs/test-kit.md`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::escape::{unhex, unquote};
use super::expect::Expect;
use crate::base::units::parse_duration;

/// A parsed script.
#[derive(Debug)]
pub struct Script {
    /// The file it came from; `file` steps are read relative to its folder.
    pub path: PathBuf,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// One step: a line of the script.
#[derive(Debug)]
pub struct Step {
    /// The line number, from 1.
    pub line: usize,
    /// The line as written, without its comment.
    pub source: String,
    /// What to do.
    pub action: Action,
}

/// What a step does. `within` is the step's own deadline, or the one the
/// script set with `timeout`; `None` leaves it to the runner.
#[derive(Debug)]
pub enum Action {
    /// Connect a new connection under this name.
    Open(String),
    /// Send bytes on a connection.
    Send { conn: String, data: Vec<u8>, within: Option<Duration> },
    /// Wait for the peer's next bytes (or end of stream) to meet an expectation.
    Expect { conn: String, expect: Expect, within: Option<Duration> },
    /// Half-close: send end of stream; receiving goes on.
    Shutdown(String),
    /// Close a connection.
    Close(String),
    /// Wait this long.
    Sleep(Duration),
}

/// Why a script cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The script file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The script.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// A line does not parse, or names a connection that is not open.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The script.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The script has no steps.
    #[error("{path}: no steps")]
    Empty {
        /// The script.
        path: PathBuf,
    },
}

impl Script {
    /// Reads and parses the script at `path`.
    pub fn load(path: &Path) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|error| ScriptError::Read { path: path.into(), error })?;
        Script::parse(path, &text)
    }

    /// Parses `text`, the script at `path` (which `file` steps are relative to).
    pub fn parse(path: &Path, text: &str) -> Result<Script, ScriptError> {
        let mut parser = Parser { dir: path.parent().unwrap_or(Path::new("")).to_path_buf(), ..Parser::default() };
        let mut steps = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let error = |message| ScriptError::Parse { path: path.into(), line: index + 1, message };
            let (tokens, source) = tokenize(line).map_err(error)?;
            if tokens.is_empty() {
                continue;
            }
            if let Some(action) = parser.step(index + 1, tokens).map_err(error)? {
                steps.push(Step { line: index + 1, source: source.to_string(), action });
            }
        }
        if steps.is_empty() {
            return Err(ScriptError::Empty { path: path.into() });
        }
        Ok(Script { path: path.into(), steps })
    }
}

/// A word of a line.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// Bare text up to the next space.
    Word(String),
    /// A double-quoted string, escapes decoded.
    Text(Vec<u8>),
    /// A regex between slashes, `\/` decoded.
    Pattern(String),
}

/// The tokens of `line` and the part of it before any comment.
fn tokenize(line: &str) -> Result<(Vec<Token>, &str), String> {
    let mut tokens = Vec::new();
    let mut rest = line.trim_start();
    while let Some(first) = rest.chars().next() {
        match first {
            '#' => break,
            '"' => {
                let (body, after) = delimited(&rest[1..], '"').ok_or("a string without its closing \"")?;
                tokens.push(Token::Text(unquote(body)?));
                rest = after;
            }
            '/' => {
                let (body, after) = delimited(&rest[1..], '/').ok_or("a regex without its closing /")?;
                tokens.push(Token::Pattern(body.replace(r"\/", "/")));
                rest = after;
            }
            _ => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                tokens.push(Token::Word(rest[..end].to_string()));
                rest = &rest[end..];
            }
        }
        rest = rest.trim_start();
    }
    let source = line[..line.len() - rest.len()].trim();
    Ok((tokens, source))
}

/// The text before the first `close` that no backslash escapes, and the
/// text after it.
fn delimited(text: &str, close: char) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            _ if c == close => return Some((&text[..i], &text[i + c.len_utf8()..])),
            _ => {}
        }
    }
    None
}

/// What the lines so far have set up.
#[derive(Default)]
struct Parser {
    /// The script's folder.
    dir: PathBuf,
    /// The deadline `timeout` set, if it did.
    timeout: Option<Duration>,
    /// Open connections: the line that shut each for writing, if one did.
    open: HashMap<String, Option<usize>>,
}

const STEPS: &str = "open, send, expect, shutdown, close, sleep, timeout";
const DATA: &str = "\"text\", hex 68 69 0a, or file NAME";

impl Parser {
    /// The action of the line `line`; `None` for a setting.
    fn step(&mut self, line: usize, mut tokens: Vec<Token>) -> Result<Option<Action>, String> {
        let Token::Word(verb) = tokens.remove(0) else {
            return Err(format!("a line starts with a step: {STEPS}"));
        };
        let within = take_within(&mut tokens)?;
        if within.is_some() && !matches!(verb.as_str(), "send" | "expect") {
            return Err(format!("`within` goes with send and expect, not {verb}"));
        }
        let own_within = within;
        let within = within.or(self.timeout);
        let action = match verb.as_str() {
            "open" => {
                let conn = one_name(&verb, &tokens)?;
                if self.open.insert(conn.clone(), None).is_some() {
                    return Err(format!("{conn} is open already (close it first, or pick another name)"));
                }
                Action::Open(conn)
            }
            "send" => {
                let (conn, rest) = self.open_name(&verb, &tokens)?;
                if let Some(Some(at)) = self.open.get(&conn) {
                    return Err(format!("{conn} was shut down for writing on line {at}"));
                }
                Action::Send { conn, data: self.data(&verb, rest)?, within }
            }
            "expect" => {
                let (conn, rest) = self.open_name(&verb, &tokens)?;
                let expect = self.expectation(rest)?;
                // Silence lasts its whole deadline: say how long, on the step.
                if matches!(expect, Expect::Nothing) && own_within.is_none() {
                    return Err(format!("expect {conn} nothing needs `within DURATION`: how long nothing may arrive"));
                }
                Action::Expect { conn, expect, within }
            }
            "shutdown" => {
                let conn = self.open_name_alone(&verb, &tokens)?;
                self.open.insert(conn.clone(), Some(line));
                Action::Shutdown(conn)
            }
            "close" => {
                let conn = self.open_name_alone(&verb, &tokens)?;
                self.open.remove(&conn);
                Action::Close(conn)
            }
            "sleep" => Action::Sleep(one_duration(&verb, &tokens)?),
            "timeout" => {
                self.timeout = Some(one_duration(&verb, &tokens)?);
                return Ok(None);
            }
            other => return Err(format!("unknown step {other:?} (steps: {STEPS})")),
        };
        Ok(Some(action))
    }

    /// The connection a step names first, which must be open, and the
    /// tokens after it.
    fn open_name<'t>(&self, verb: &str, tokens: &'t [Token]) -> Result<(String, &'t [Token]), String> {
        let conn = name(verb, tokens.first())?;
        if !self.open.contains_key(&conn) {
            return Err(format!("{conn} is not open (add `open {conn}` before this line)"));
        }
        Ok((conn, &tokens[1..]))
    }

    /// The only token: the name of an open connection.
    fn open_name_alone(&self, verb: &str, tokens: &[Token]) -> Result<String, String> {
        let conn = one_name(verb, tokens)?;
        self.open_name(verb, tokens)?;
        Ok(conn)
    }

    /// What an expect step waits for.
    fn expectation(&self, tokens: &[Token]) -> Result<Expect, String> {
        use Token::{Pattern, Word};
        match tokens {
            [Word(closed)] if closed == "closed" => Ok(Expect::Closed),
            [Word(nothing)] if nothing == "nothing" => Ok(Expect::Nothing),
            [Word(n), Word(unit)] if unit == "bytes" || unit == "byte" => match n.parse() {
                Ok(n) if n > 0 => Ok(Expect::Count(n)),
                _ => Err(format!("{n:?} is not a positive number of bytes")),
            },
            [Pattern(pattern)] => Expect::regex(pattern).map_err(|e| format!("bad regex /{pattern}/: {e}")),
            [Pattern(_), ..] => Err("a regex stands alone: expect NAME /REGEX/ [within DURATION]".into()),
            _ => {
                let data =
                    self.data("expect", tokens).map_err(|e| format!("{e}; or /REGEX/, N bytes, closed, nothing"))?;
                Ok(Expect::Exact(data))
            }
        }
    }

    /// The bytes of `tokens`: quoted text, `hex` pairs and `file` contents,
    /// joined in order.
    fn data(&self, verb: &str, tokens: &[Token]) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        let mut rest = tokens;
        while let Some((first, after)) = rest.split_first() {
            rest = after;
            match first {
                Token::Text(text) => bytes.extend_from_slice(text),
                Token::Word(word) if word == "hex" => {
                    let count =
                        rest.iter().take_while(|t| matches!(t, Token::Word(w) if w != "hex" && w != "file")).count();
                    if count == 0 {
                        return Err("hex needs bytes, as in hex 68 69 0a".into());
                    }
                    let words = rest[..count].iter().map(|t| match t {
                        Token::Word(w) => w.as_str(),
                        _ => unreachable!("only words were counted"),
                    });
                    bytes.extend(unhex(words)?);
                    rest = &rest[count..];
                }
                Token::Word(word) if word == "file" => {
                    let name = match rest.split_first() {
                        Some((Token::Word(name), after)) => {
                            rest = after;
                            name.clone()
                        }
                        Some((Token::Text(name), after)) => {
                            rest = after;
                            String::from_utf8(name.clone()).map_err(|_| "a file name must be UTF-8".to_string())?
                        }
                        _ => return Err("file needs a name, as in file request.bin".into()),
                    };
                    let path = self.dir.join(&name);
                    let contents = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    bytes.extend(contents);
                }
                Token::Word(word) => return Err(format!("{verb} takes bytes ({DATA}), not {word:?}")),
                Token::Pattern(_) => return Err(format!("{verb} takes bytes ({DATA}), not a regex")),
            }
        }
        if bytes.is_empty() {
            return Err(format!("{verb} needs bytes: {DATA}"));
        }
        Ok(bytes)
    }
}

/// Removes a trailing `within DURATION` and returns the duration.
fn take_within(tokens: &mut Vec<Token>) -> Result<Option<Duration>, String> {
    let n = tokens.len();
    if n < 2 || tokens[n - 2] != Token::Word("within".into()) {
        return Ok(None);
    }
    let Token::Word(duration) = &tokens[n - 1] else {
        return Err("within needs a duration, as in within 2s".into());
    };
    let duration = parse_duration(duration)?;
    tokens.truncate(n - 2);
    Ok(Some(duration))
}

/// A connection name: letters, digits, `_` and `-`.
fn name(verb: &str, token: Option<&Token>) -> Result<String, String> {
    match token {
        Some(Token::Word(name)) if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') => {
            Ok(name.clone())
        }
        Some(Token::Word(name)) => Err(format!("{name:?} is not a connection name (letters, digits, _ and -)")),
        _ => Err(format!("{verb} needs a connection name, as in {verb} a")),
    }
}

/// The only token: a connection name.
fn one_name(verb: &str, tokens: &[Token]) -> Result<String, String> {
    let conn = name(verb, tokens.first())?;
    if tokens.len() > 1 {
        return Err(format!("{verb} takes one connection name, as in {verb} {conn}"));
    }
    Ok(conn)
}

/// The only token: a duration.
fn one_duration(verb: &str, tokens: &[Token]) -> Result<Duration, String> {
    match tokens {
        [Token::Word(duration)] => parse_duration(duration),
        _ => Err(format!("{verb} takes a duration, as in {verb} 2s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Script, ScriptError> {
        Script::parse(Path::new("dir/t.evt"), text)
    }

    /// The message of a parse error on `line`.
    fn error_on(line: usize, text: &str) -> String {
        match parse(text) {
            Err(ScriptError::Parse { line: at, message, path }) => {
                assert_eq!(at, line, "error on the wrong line: {message}");
                assert_eq!(path, Path::new("dir/t.evt"));
                message
            }
            other => panic!("expected a parse error on line {line}, got {other:?}"),
        }
    }

    fn sent(step: &Step) -> &[u8] {
        match &step.action {
            Action::Send { data, .. } => data,
            other => panic!("not a send: {other:?}"),
        }
    }

    fn expected(step: &Step) -> (&Expect, Option<Duration>) {
        match &step.action {
            Action::Expect { expect, within, .. } => (expect, *within),
            other => panic!("not an expect: {other:?}"),
        }
    }

    /// Every kind of step, with comments and blank lines between them, and
    /// the line each came from.
    #[test]
    fn every_step_kind() {
        let script = parse(
            "# a comment\n\
             open a   # trailing comment\n\
             \n\
             send a \"Hello\\n\"\n\
             expect a \"Uryyb\\n\"\n\
             open b\n\
             send b hex 68 69 0a\n\
             expect b /^uv\\n$/ within 2s\n\
             expect b 3 bytes\n\
             expect b 1 byte\n\
             shutdown a\n\
             expect a closed\n\
             expect b nothing within 100ms\n\
             sleep 10ms\n\
             close b\n\
             close a\n",
        )
        .unwrap();
        let lines: Vec<usize> = script.steps.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(script.steps[0].source, "open a");
        assert!(matches!(&script.steps[0].action, Action::Open(c) if c == "a"));
        assert_eq!(sent(&script.steps[1]), b"Hello\n");
        assert!(matches!(expected(&script.steps[2]), (Expect::Exact(b), None) if b == b"Uryyb\n"));
        assert_eq!(sent(&script.steps[4]), b"hi\n");
        let (regex, within) = expected(&script.steps[5]);
        assert_eq!(regex.describe(), "/^uv\\n$/");
        assert_eq!(within, Some(Duration::from_secs(2)));
        assert!(matches!(expected(&script.steps[6]).0, Expect::Count(3)));
        assert!(matches!(expected(&script.steps[7]).0, Expect::Count(1)));
        assert!(matches!(&script.steps[8].action, Action::Shutdown(c) if c == "a"));
        assert!(matches!(expected(&script.steps[9]).0, Expect::Closed));
        assert!(matches!(expected(&script.steps[10]), (Expect::Nothing, Some(d)) if d == Duration::from_millis(100)));
        assert!(matches!(script.steps[11].action, Action::Sleep(d) if d == Duration::from_millis(10)));
        assert!(matches!(&script.steps[12].action, Action::Close(c) if c == "b"));
    }

    /// Text escapes, joined pieces, hex in pairs or runs, and `#` inside
    /// quotes is text, not a comment.
    #[test]
    fn data_forms() {
        let script = parse(
            "open a\n\
             send a \"tab\\t cr\\r nul\\0 quote\\\" backslash\\\\ byte\\xff # not a comment\"\n\
             send a \"GET / HTTP/1.0\\r\\n\" \"\\r\\n\"\n\
             send a hex 00ff 10\n\
             send a \"A\" hex 42 \"C\"\n",
        )
        .unwrap();
        assert_eq!(sent(&script.steps[1]), b"tab\t cr\r nul\0 quote\" backslash\\ byte\xff # not a comment");
        assert_eq!(sent(&script.steps[2]), b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(sent(&script.steps[3]), b"\x00\xff\x10");
        assert_eq!(sent(&script.steps[4]), b"ABC");
    }

    /// `\/` in a regex is a slash; other escapes go to the regex as written.
    #[test]
    fn regex_slashes() {
        let script = parse("open a\nexpect a /a\\/b\\d/\n").unwrap();
        assert_eq!(expected(&script.steps[1]).0.describe(), "/a\\/b\\d/");
    }

    /// `file` reads relative to the script's folder, quoted names too.
    #[test]
    fn file_relative_to_script() {
        let dir = std::env::temp_dir().join(format!("evconn-script-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("data/request bin"), b"\x01\x02").unwrap();
        std::fs::write(dir.join("reply.bin"), b"ok").unwrap();
        let script = Script::parse(
            &dir.join("t.evt"),
            "open a\nsend a file \"data/request bin\"\nexpect a file reply.bin\nexpect a file missing.bin\n",
        );
        let message = match script {
            Err(ScriptError::Parse { line: 4, message, .. }) => message,
            other => panic!("expected a parse error on line 4: {other:?}"),
        };
        assert!(message.contains("missing.bin"), "{message}");
        let script =
            Script::parse(&dir.join("t.evt"), "open a\nsend a file \"data/request bin\"\nexpect a file reply.bin\n")
                .unwrap();
        assert_eq!(sent(&script.steps[1]), b"\x01\x02");
        assert!(matches!(expected(&script.steps[2]).0, Expect::Exact(b) if b == b"ok"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `timeout` sets the deadline of the steps after it; `within` wins.
    #[test]
    fn timeout_and_within() {
        let script = parse(
            "open a\nexpect a \"x\"\ntimeout 2s\nexpect a \"y\"\nexpect a \"z\" within 300ms\nsend a \"w\" within 1m\n",
        )
        .unwrap();
        assert_eq!(expected(&script.steps[1]).1, None);
        assert_eq!(expected(&script.steps[2]).1, Some(Duration::from_secs(2)));
        assert_eq!(expected(&script.steps[3]).1, Some(Duration::from_millis(300)));
        assert!(matches!(script.steps[4].action, Action::Send { within: Some(d), .. } if d == Duration::from_secs(60)));
    }

    /// Each mistake is reported on its own line, saying what is wrong.
    #[test]
    fn errors_name_the_line() {
        assert!(error_on(2, "open a\nsned a \"x\"\n").contains("unknown step \"sned\""));
        assert!(error_on(1, "send a \"x\"\n").contains("a is not open"));
        assert!(error_on(3, "open a\nclose a\nexpect a \"x\"\n").contains("a is not open"));
        assert!(error_on(2, "open a\nopen a\n").contains("open already"));
        assert!(error_on(2, "open a\nsend a \"unterminated\n").contains("closing \""));
        assert!(error_on(2, "open a\nsend a \"bad \\q\"\n").contains("unknown escape \\q"));
        assert!(error_on(2, "open a\nexpect a /unterminated\n").contains("closing /"));
        assert!(error_on(2, "open a\nexpect a /(/\n").contains("bad regex"));
        assert!(error_on(2, "open a\nsend a hex 6\n").contains("not hex"));
        assert!(error_on(2, "open a\nsend a hex\n").contains("hex needs bytes"));
        assert!(error_on(2, "open a\nsend a\n").contains("send needs bytes"));
        assert!(error_on(2, "open a\nsend a hello\n").contains("not \"hello\""));
        assert!(error_on(2, "open a\nexpect a 0 bytes\n").contains("positive"));
        assert!(error_on(2, "open a\nexpect a \"x\" within soon\n").contains("not a duration"));
        assert!(error_on(2, "open a\nclose a within 2s\n").contains("within"));
        assert!(error_on(3, "open a\ntimeout 1s\nexpect a nothing\n").contains("nothing needs `within"));
        assert!(error_on(3, "open a\nshutdown a\nsend a \"x\"\n").contains("shut down for writing on line 2"));
        assert!(error_on(1, "open a.b\n").contains("not a connection name"));
        assert!(error_on(1, "open a b\n").contains("one connection name"));
        assert!(error_on(1, "sleep\n").contains("takes a duration"));
        assert!(error_on(1, "\"text\"\n").contains("starts with a step"));
        assert!(matches!(parse("# nothing\n\n"), Err(ScriptError::Empty { .. })));
    }

    /// A parse error reads `FILE:LINE: message`.
    #[test]
    fn error_format() {
        let error = parse("open a\nbogus\n").unwrap_err();
        assert!(error.to_string().starts_with("dir/t.evt:2: unknown step"), "{error}");
    }
}
