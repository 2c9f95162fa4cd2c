//! A small Dockerfile parser: enough for `runtime/Dockerfile`, and loud about
//! syntax it does not understand (heredocs, a custom escape character); plus
//! the shell-word splitting the checks use on RUN, ENV and LABEL.

use std::collections::HashMap;
use std::path::Path;

use crate::read_runtime;

#[derive(Debug, Clone)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// Upper-cased keyword: FROM, RUN, COPY, ...
    pub keyword: String,
    /// Everything after the keyword, continuation lines joined with a space.
    pub args: String,
}

pub struct Dockerfile {
    pub instructions: Vec<Instruction>,
    /// Defaults of every ARG (unquoted); ARGs without a default are absent.
    pub arg_defaults: HashMap<String, String>,
}

impl Dockerfile {
    pub fn load() -> Self {
        Self::parse(&read_runtime("Dockerfile"))
    }

    pub fn parse(text: &str) -> Self {
        let mut instructions = Vec::new();
        let mut current: Option<(usize, String)> = None;
        for (index, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            // Docker skips a blank line inside a continued instruction (and
            // warns it will become an error): it almost always means a lost
            // `&& ...` line gluing two instructions together. Refuse it.
            if let Some((start, _)) = &current {
                assert!(
                    !trimmed.is_empty(),
                    "line {}: blank line inside the instruction continued from line {start}",
                    index + 1
                );
            }
            // Comment lines are dropped, also in the middle of a continued
            // instruction (Docker does the same); so are blank lines.
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (body, continues) = match trimmed.strip_suffix('\\') {
                Some(body) => (body.trim(), true),
                None => (trimmed, false),
            };
            match &mut current {
                Some((_, text)) => {
                    text.push(' ');
                    text.push_str(body);
                }
                None => current = Some((index + 1, body.to_string())),
            }
            if !continues {
                let (line, text) = current.take().expect("an instruction is being built");
                let (keyword, args) = match text.split_once(char::is_whitespace) {
                    Some((k, a)) => (k, a.trim()),
                    None => (text.as_str(), ""),
                };
                instructions.push(Instruction {
                    line,
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.to_string(),
                });
            }
        }
        if let Some((line, _)) = current {
            panic!("the Dockerfile ends inside the line continuation that starts at line {line}");
        }
        let mut arg_defaults = HashMap::new();
        for ins in instructions.iter().filter(|i| i.keyword == "ARG") {
            if let Some((name, value)) = ins.args.split_once('=') {
                arg_defaults.insert(name.trim().to_string(), unquote(value.trim()));
            }
        }
        Self {
            instructions,
            arg_defaults,
        }
    }

    pub fn all(&self, keyword: &str) -> Vec<&Instruction> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == keyword)
            .collect()
    }

    pub fn last(&self, keyword: &str) -> &Instruction {
        self.instructions
            .iter()
            .rev()
            .find(|i| i.keyword == keyword)
            .unwrap_or_else(|| panic!("the Dockerfile has no {keyword} instruction"))
    }

    /// Replaces `${NAME}` and `$NAME` with ARG defaults (unknown names stay).
    pub fn expand(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
                match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            match self.arg_defaults.get(name) {
                Some(value) if !name.is_empty() => out.push_str(value),
                _ => {
                    out.push('$');
                    out.push_str(&after[..consumed]);
                }
            }
            rest = &after[consumed..];
        }
        out.push_str(rest);
        out
    }

    /// Every RUN as (instruction, its commands split into shell words).
    pub fn runs(&self) -> Vec<(&Instruction, Vec<Vec<String>>)> {
        self.all("RUN")
            .into_iter()
            .map(|ins| (ins, shell_commands(&ins.args)))
            .collect()
    }

    pub fn copies(&self) -> Vec<CopyInstruction> {
        self.all("COPY")
            .into_iter()
            .map(|ins| {
                let (flags, mut paths) = split_flags(&ins.args);
                assert!(
                    paths.len() >= 2,
                    "line {}: COPY needs a source and a destination: {}",
                    ins.line,
                    ins.args
                );
                let dest = paths.pop().expect("checked above");
                CopyInstruction {
                    line: ins.line,
                    flags,
                    sources: paths,
                    dest,
                }
            })
            .collect()
    }

    /// The COPY that copies `source` (a file of the build context).
    pub fn copy_of(&self, source: &str) -> (CopyInstruction, String) {
        for copy in self.copies() {
            if copy.sources.iter().any(|s| s == source) {
                let dest = copy.destination_of(source);
                return (copy, dest);
            }
        }
        panic!("no COPY instruction copies {source} into the image")
    }
}

#[derive(Debug)]
pub struct CopyInstruction {
    pub line: usize,
    pub flags: HashMap<String, String>,
    pub sources: Vec<String>,
    pub dest: String,
}

impl CopyInstruction {
    fn destination_of(&self, source: &str) -> String {
        if self.dest.ends_with('/') || self.sources.len() > 1 {
            let name = Path::new(source)
                .file_name()
                .expect("a source file name")
                .to_string_lossy();
            format!("{}/{}", self.dest.trim_end_matches('/'), name)
        } else {
            self.dest.clone()
        }
    }
}

/// Leading `--name=value` flags, then the remaining words (or the elements
/// of a JSON array).
pub fn split_flags(args: &str) -> (HashMap<String, String>, Vec<String>) {
    let mut flags = HashMap::new();
    let mut rest = args.trim();
    while let Some(flag) = rest.strip_prefix("--") {
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let (name, value) = flag[..end].split_once('=').unwrap_or((&flag[..end], ""));
        flags.insert(name.to_string(), value.to_string());
        rest = flag[end..].trim_start();
    }
    let words = if rest.starts_with('[') {
        exec_form(rest).unwrap_or_else(|| panic!("malformed JSON array: {rest}"))
    } else {
        rest.split_whitespace().map(unquote).collect()
    };
    (flags, words)
}

/// The elements of an exec-form (JSON array) argument, or None if the
/// instruction uses the shell form.
pub fn exec_form(args: &str) -> Option<Vec<String>> {
    serde_json::from_str::<Vec<String>>(args.trim()).ok()
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

#[derive(Debug, PartialEq)]
pub enum Token {
    Word(String),
    /// `&&`, `||`, `;`, `|`, `&`
    Op(String),
}

/// Splits shell text into words and control operators: quotes are removed,
/// backslash escapes honoured outside single quotes. No expansions.
pub fn shell_tokens(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    let flush = |word: &mut String, in_word: &mut bool, tokens: &mut Vec<Token>| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        _ => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            '&' | '|' | ';' => {
                flush(&mut word, &mut in_word, &mut tokens);
                let mut op = c.to_string();
                if c != ';' && chars.peek() == Some(&c) {
                    op.push(chars.next().expect("peeked"));
                }
                tokens.push(Token::Op(op));
            }
            c if c.is_whitespace() => flush(&mut word, &mut in_word, &mut tokens),
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut in_word, &mut tokens);
    tokens
}

/// The simple commands of shell text, each as its words.
pub fn shell_commands(text: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    for token in shell_tokens(text) {
        match token {
            Token::Word(w) => commands.last_mut().expect("never empty").push(w),
            Token::Op(_) => commands.push(Vec::new()),
        }
    }
    commands.retain(|c| !c.is_empty());
    commands
}

/// The value of `--long VALUE`, `--long=VALUE` or `-s VALUE` in `words`.
pub fn option_value<'a>(words: &'a [String], long: &str, short: &str) -> Option<&'a str> {
    for (i, w) in words.iter().enumerate() {
        if let Some(v) = w.strip_prefix(&format!("{long}=")) {
            return Some(v);
        }
        if w == long || w == short {
            return words.get(i + 1).map(String::as_str);
        }
    }
    None
}

pub fn parse_octal_mode(mode: &str) -> u32 {
    u32::from_str_radix(mode, 8).unwrap_or_else(|_| panic!("--chmod={mode} is not an octal mode"))
}

#[test]
fn parser_understands_continuations_comments_and_shell_words() {
    let df = Dockerfile::parse(
        "# syntax=docker/dockerfile:1\nARG V=\"1.2\"\nFROM img:1\nRUN a \\\n  # note\n  && b \"c d\" 'e|f' \\\n  | g;h\nUSER 7\n",
    );
    let kinds: Vec<_> = df.instructions.iter().map(|i| i.keyword.as_str()).collect();
    assert_eq!(kinds, ["ARG", "FROM", "RUN", "USER"]);
    assert_eq!(df.last("RUN").line, 4);
    assert_eq!(df.arg_defaults["V"], "1.2");
    assert_eq!(df.expand("x${V}y$V."), "x1.2y1.2.");
    assert_eq!(df.expand("${UNKNOWN}"), "${UNKNOWN}");
    assert_eq!(
        shell_commands(&df.last("RUN").args),
        [vec!["a"], vec!["b", "c d", "e|f"], vec!["g"], vec!["h"]]
    );
}

#[test]
fn dockerfile_uses_only_syntax_these_checks_understand() {
    let text = read_runtime("Dockerfile");
    assert!(
        !text
            .lines()
            .any(|l| l.trim().to_ascii_lowercase().starts_with("# escape=")),
        "the Dockerfile changes the escape character; the parser in this test assumes `\\`"
    );
    for ins in Dockerfile::load().all("RUN") {
        assert!(
            !ins.args.contains("<<"),
            "line {}: heredocs in RUN are not understood by this test's parser",
            ins.line
        );
    }
    let froms = Dockerfile::load().all("FROM").len();
    assert_eq!(
        froms, 1,
        "expected a single-stage build (one FROM), found {froms}"
    );
}
