//! The session attached in the dashboard's pane: its byte stream, what it
//! shows, and the prefix key that leads from it to the pane's commands.

use crate::driver::Attachment;
use crate::store::activity::ActivityTracker;

pub(super) struct AttachedPane {
    pub attachment: Attachment,
    /// Notes typing and output for the idle policy.
    pub activity: ActivityTracker,
    /// Why the console cut the session, when it did.
    pub revoked: crate::console::Revoked,
}

impl AttachedPane {
    /// What the dashboard says when the session's stream ends.
    pub fn ended_because(&self) -> String {
        match self.revoked.get() {
            Some(why) => why.clone(),
            None => "the session's terminal closed".into(),
        }
    }
}

impl AttachedPane {
    /// Output of the session; pending forever while no pane is open.
    pub async fn output(pane: &mut Option<AttachedPane>) -> Option<Vec<u8>> {
        match pane {
            Some(p) => p.attachment.output.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Sends the pane's new size to the session (dropped if it is far behind:
    /// the next resize carries the size again).
    pub fn resize(&self, size: Option<(u16, u16)>) {
        if let Some(size) = size {
            let _ = self.attachment.resize.try_send(size);
        }
    }
}

/// Splits keystrokes meant for the attached session from the prefix
/// commands (the byte after the prefix); the prefix twice sends it once.
pub(super) fn split_prefix(bytes: &[u8], armed: &mut bool, prefix: u8) -> (Vec<u8>, Vec<u8>) {
    let mut to_session = Vec::with_capacity(bytes.len());
    let mut commands = Vec::new();
    for &b in bytes {
        if *armed {
            *armed = false;
            if b == prefix {
                to_session.push(b);
            } else {
                commands.push(b);
            }
        } else if b == prefix {
            *armed = true;
        } else {
            to_session.push(b);
        }
    }
    (to_session, commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_splits_commands_from_keystrokes_even_across_reads() {
        let mut armed = false;
        assert_eq!(
            split_prefix(b"ls\r", &mut armed, 0x1d),
            (b"ls\r".to_vec(), vec![])
        );
        assert_eq!(
            split_prefix(b"ab\x1dzcd", &mut armed, 0x1d),
            (b"abcd".to_vec(), vec![b'z'])
        );
        assert_eq!(
            split_prefix(b"x\x1d", &mut armed, 0x1d),
            (b"x".to_vec(), vec![])
        );
        assert!(armed);
        assert_eq!(split_prefix(b"d", &mut armed, 0x1d), (vec![], vec![b'd']));
        assert_eq!(
            split_prefix(b"\x1d\x1d", &mut armed, 0x1d),
            (vec![0x1d], vec![])
        );
        assert!(!armed);
    }
}
