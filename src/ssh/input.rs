//! Decoding the bytes an SSH client sends into keys and pastes, with the
//! `vte` parser (alacritty's) doing the escape-sequence state machine.

use crate::tui::Key;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Key(Key),
    Paste(String),
}

/// Keeps parser state across reads: an escape sequence may be split over
/// two SSH packets.
pub struct InputDecoder {
    parser: vte::Parser,
    sink: Sink,
}

#[derive(Default)]
struct Sink {
    out: Vec<Input>,
    paste: Option<String>,
    /// The previous sequence was SS3 (`ESC O`): the next character names an
    /// F1–F4 or cursor key.
    ss3: bool,
}

impl Default for InputDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl InputDecoder {
    pub fn new() -> Self {
        Self {
            parser: vte::Parser::new(),
            sink: Sink::default(),
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Input> {
        for (i, &b) in bytes.iter().enumerate() {
            // vte ignores DEL; terminals send it for Backspace.
            if b == 0x7f && self.sink.paste.is_none() {
                self.sink.out.push(Input::Key(Key::Backspace));
                continue;
            }
            // A lone ESC at the end of a read is the Esc key: a terminal sends
            // an escape sequence in one write, never with ESC last.
            if b == 0x1b && i == bytes.len() - 1 && self.sink.paste.is_none() {
                self.parser = vte::Parser::new();
                self.sink.out.push(Input::Key(Key::Esc));
                continue;
            }
            self.parser.advance(&mut self.sink, &[b]);
        }
        std::mem::take(&mut self.sink.out)
    }
}

impl vte::Perform for Sink {
    fn print(&mut self, c: char) {
        if let Some(p) = &mut self.paste {
            p.push(c);
            return;
        }
        if std::mem::take(&mut self.ss3) {
            let key = match c {
                'A' => Key::Up,
                'B' => Key::Down,
                'C' => Key::Right,
                'D' => Key::Left,
                'H' => Key::Home,
                'F' => Key::End,
                'P' => Key::F(1),
                'Q' => Key::F(2),
                'R' => Key::F(3),
                'S' => Key::F(4),
                _ => return,
            };
            self.out.push(Input::Key(key));
            return;
        }
        self.out.push(Input::Key(Key::Char(c)));
    }

    fn execute(&mut self, byte: u8) {
        if let Some(p) = &mut self.paste {
            if byte == b'\r' || byte == b'\n' || byte == b'\t' {
                p.push(byte as char);
            }
            return;
        }
        let key = match byte {
            b'\r' | b'\n' => Key::Enter,
            b'\t' => Key::Tab,
            0x08 => Key::Backspace,
            0x00 => Key::Ctrl(' '),
            0x01..=0x1a => Key::Ctrl((b'a' + byte - 1) as char),
            0x1c..=0x1f => Key::Ctrl((b'4' + byte - 0x1c) as char),
            _ => return,
        };
        self.out.push(Input::Key(key));
    }

    fn csi_dispatch(
        &mut self,
        params: &vte::Params,
        _intermediates: &[u8],
        _ignore: bool,
        action: char,
    ) {
        let first = params
            .iter()
            .next()
            .and_then(|p| p.first().copied())
            .unwrap_or(0);
        if action == '~' && first == 200 {
            self.paste = Some(String::new());
            return;
        }
        if action == '~' && first == 201 {
            if let Some(p) = self.paste.take() {
                self.out.push(Input::Paste(p));
            }
            return;
        }
        if self.paste.is_some() {
            return;
        }
        let key = match (action, first) {
            ('A', _) => Key::Up,
            ('B', _) => Key::Down,
            ('C', _) => Key::Right,
            ('D', _) => Key::Left,
            ('H', _) => Key::Home,
            ('F', _) => Key::End,
            ('Z', _) => Key::BackTab,
            ('~', 1 | 7) => Key::Home,
            ('~', 3) => Key::Delete,
            ('~', 4 | 8) => Key::End,
            ('~', 5) => Key::PageUp,
            ('~', 6) => Key::PageDown,
            ('~', n @ 11..=15) => Key::F((n - 10) as u8),
            ('~', n @ 17..=21) => Key::F((n - 11) as u8),
            ('~', n @ 23..=24) => Key::F((n - 12) as u8),
            _ => return,
        };
        self.out.push(Input::Key(key));
    }

    fn esc_dispatch(&mut self, _intermediates: &[u8], _ignore: bool, byte: u8) {
        if self.paste.is_some() {
            return;
        }
        if byte == b'O' {
            self.ss3 = true;
        } else if byte.is_ascii_graphic() {
            self.out.push(Input::Key(Key::Alt(byte as char)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(bytes: &[u8]) -> Vec<Input> {
        InputDecoder::new().feed(bytes)
    }

    #[test]
    fn plain_keys_and_controls() {
        assert_eq!(
            keys(b"ab\r\x7f\x03\t"),
            vec![
                Input::Key(Key::Char('a')),
                Input::Key(Key::Char('b')),
                Input::Key(Key::Enter),
                Input::Key(Key::Backspace),
                Input::Key(Key::Ctrl('c')),
                Input::Key(Key::Tab),
            ]
        );
        assert_eq!(keys("é".as_bytes()), vec![Input::Key(Key::Char('é'))]);
    }

    #[test]
    fn escape_sequences_including_split_ones() {
        assert_eq!(
            keys(b"\x1b[A\x1b[B\x1b[5~\x1b[3~\x1bOP\x1b[Z"),
            vec![
                Input::Key(Key::Up),
                Input::Key(Key::Down),
                Input::Key(Key::PageUp),
                Input::Key(Key::Delete),
                Input::Key(Key::F(1)),
                Input::Key(Key::BackTab),
            ]
        );
        let mut d = InputDecoder::new();
        assert_eq!(d.feed(b"\x1b["), vec![]);
        assert_eq!(d.feed(b"C"), vec![Input::Key(Key::Right)]);
    }

    #[test]
    fn a_lone_escape_is_the_esc_key_and_alt_combinations_work() {
        assert_eq!(keys(b"\x1b"), vec![Input::Key(Key::Esc)]);
        assert_eq!(keys(b"\x1bx"), vec![Input::Key(Key::Alt('x'))]);
        let mut d = InputDecoder::new();
        assert_eq!(d.feed(b"\x1b"), vec![Input::Key(Key::Esc)]);
        assert_eq!(d.feed(b"j"), vec![Input::Key(Key::Char('j'))]);
    }

    #[test]
    fn bracketed_paste_arrives_whole_and_is_not_interpreted() {
        assert_eq!(
            keys(b"\x1b[200~ssh-ed25519 AAAA x\x1b[A\r\n\x1b[201~q"),
            vec![
                Input::Paste("ssh-ed25519 AAAA x\r\n".into()),
                Input::Key(Key::Char('q'))
            ]
        );
    }
}
