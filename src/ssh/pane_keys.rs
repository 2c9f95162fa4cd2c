//! The keystroke shortcut into an open pane. While the pane has the
//! keyboard, the SSH handler writes keys straight to the attached session's
//! input, which saves them a trip through the dashboard task (the echo a
//! person waits for is measured against plain `ssh` + `tmux attach`).
//!
//! Order is what matters: a key must never overtake an earlier one. The
//! handler takes the dashboard's way for anything with the prefix key in it
//! (and for everything after it), and only the dashboard task opens the
//! shortcut again — under the same lock, and only once it has handled every
//! key that took its way.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::driver::SessionInput;

#[derive(Clone, Default)]
pub struct PaneKeys(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// The open pane's input, while the shortcut is open.
    route: Option<Route>,
    /// The last key sent to the pane, by either way.
    typed: Option<Instant>,
}

struct Route {
    input: SessionInput,
    prefix: u8,
    /// The program in the pane did not ask for bracketed paste.
    strip_paste: bool,
}

const PASTE_START: &[u8] = b"\x1b[200~";
const PASTE_END: &[u8] = b"\x1b[201~";

/// Keys for a pane: the client's terminal wraps every paste in markers
/// (the dashboard asked it to), but a program that did not ask for them
/// would take them for typed garbage.
pub fn for_pane(bytes: &[u8], strip_paste: bool) -> Vec<u8> {
    if !strip_paste || !bytes.contains(&0x1b) {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(PASTE_START) || rest.starts_with(PASTE_END) {
            i += PASTE_START.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

impl PaneKeys {
    /// The handler's side: `true` when the bytes went straight to the
    /// session; `false` when they must take the dashboard's way.
    pub fn send(&self, bytes: &[u8]) -> bool {
        let mut s = self.0.lock().expect("pane keys lock");
        let Some(route) = &s.route else {
            return false;
        };
        if bytes.contains(&route.prefix)
            || !route.input.try_send(for_pane(bytes, route.strip_paste))
        {
            // Closed until the dashboard has handled this and all before it.
            s.route = None;
            return false;
        }
        s.typed = Some(Instant::now());
        true
    }

    /// The dashboard's side, called whenever it is idle: opens the shortcut
    /// to `input` if nothing is waiting on the dashboard's way
    /// (`drained`), closes it when there is no pane (`None`).
    /// `strip_paste`: the pane's program did not ask for bracketed paste.
    pub fn sync(&self, input: Option<(&SessionInput, u8, bool)>, drained: bool) {
        let mut s = self.0.lock().expect("pane keys lock");
        s.route = match input {
            Some((input, prefix, strip_paste)) if drained => {
                if let Some(r) = &mut s.route
                    && r.input.same(input)
                {
                    r.strip_paste = strip_paste;
                    return;
                }
                Some(Route {
                    input: input.clone(),
                    prefix,
                    strip_paste,
                })
            }
            _ => None,
        };
    }

    /// A key went to the pane the dashboard's way.
    pub fn note_typed(&self) {
        self.0.lock().expect("pane keys lock").typed = Some(Instant::now());
    }

    /// Whether a key went to the pane (either way) within `window`.
    pub fn typed_within(&self, window: std::time::Duration) -> bool {
        let typed = self.0.lock().expect("pane keys lock").typed;
        typed.is_some_and(|t| t.elapsed() < window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn input(capacity: usize) -> (SessionInput, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(capacity);
        (SessionInput::new(tx), rx)
    }

    #[test]
    fn keys_take_the_shortcut_only_while_the_dashboard_keeps_it_open() {
        let keys = PaneKeys::default();
        let (tx, mut rx) = input(4);
        assert!(!keys.send(b"x"), "no pane: the dashboard's way");
        keys.sync(Some((&tx, 0x1d, false)), false);
        assert!(
            !keys.send(b"x"),
            "keys still waiting on the dashboard's way"
        );
        keys.sync(Some((&tx, 0x1d, false)), true);
        assert!(keys.send(b"ls"));
        assert_eq!(rx.try_recv().unwrap(), b"ls");
        assert!(keys.typed_within(std::time::Duration::from_secs(60)));
        // The prefix closes it, and it stays closed for what follows.
        assert!(!keys.send(b"\x1dd"));
        assert!(!keys.send(b"x"));
        assert!(rx.try_recv().is_err());
        keys.sync(Some((&tx, 0x1d, false)), true);
        assert!(keys.send(b"y"));
        keys.sync(None, true);
        assert!(!keys.send(b"z"));
    }

    #[test]
    fn paste_markers_reach_only_a_program_that_asked_for_them() {
        let paste = b"\x1b[200~two\nlines\x1b[201~\x1b[A";
        assert_eq!(for_pane(paste, false), paste.to_vec());
        assert_eq!(for_pane(paste, true), b"two\nlines\x1b[A".to_vec());
        let keys = PaneKeys::default();
        let (tx, mut rx) = input(4);
        keys.sync(Some((&tx, 0x1d, true)), true);
        assert!(keys.send(paste));
        assert_eq!(rx.try_recv().unwrap(), b"two\nlines\x1b[A");
        keys.sync(Some((&tx, 0x1d, false)), true);
        assert!(keys.send(paste));
        assert_eq!(rx.try_recv().unwrap(), paste.to_vec());
    }

    #[test]
    fn a_full_session_queue_closes_it_rather_than_reorder_keys() {
        let keys = PaneKeys::default();
        let (tx, _rx) = input(1);
        keys.sync(Some((&tx, 0x1d, false)), true);
        assert!(keys.send(b"a"));
        assert!(!keys.send(b"b"), "queue full");
        assert!(!keys.send(b"c"), "closed after a fallback");
    }
}
