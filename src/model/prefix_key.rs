//! The prefix key: the one control key that, while a session has the
//! keyboard, leads back to Kiln (Ctrl-] then `d` detaches the pane; alone,
//! it ends a direct attach). Server-wide, from `ssh.prefix_key`.

/// A control key, as the byte the terminal sends and as shown on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixKey {
    byte: u8,
}

impl Default for PrefixKey {
    /// Ctrl-]: telnet's escape, rarely needed inside a shell or an editor.
    fn default() -> Self {
        PrefixKey { byte: 0x1d }
    }
}

impl PrefixKey {
    /// Parses `C-x`, `Ctrl-x` or `^x` (x a letter or one of `@[\]^_`),
    /// refusing the keys a session cannot do without.
    pub fn parse(text: &str) -> Result<PrefixKey, String> {
        let t = text.trim();
        let key = ["Ctrl-", "ctrl-", "CTRL-", "C-", "c-", "^"]
            .iter()
            .find_map(|p| t.strip_prefix(p))
            .ok_or_else(|| format!("{t:?} is not a control key: write it as C-] or C-a"))?;
        let mut chars = key.chars();
        let (Some(c), None) = (chars.next(), chars.next()) else {
            return Err(format!("{t:?}: one key after C-, e.g. C-] or C-a"));
        };
        let upper = c.to_ascii_uppercase();
        if !matches!(upper, 'A'..='Z' | '@' | '[' | '\\' | ']' | '^' | '_') {
            return Err(format!("{t:?}: C- takes a letter or one of @ [ \\ ] ^ _"));
        }
        let byte = upper as u8 & 0x1f;
        let refused = match byte {
            0x00 => Some("it is NUL, which many terminals send for Ctrl-Space"),
            0x03 => Some("programs need Ctrl-C to interrupt"),
            0x08 => Some("it is Backspace on many terminals"),
            0x09 => Some("it is Tab"),
            0x0a | 0x0d => Some("it is Enter"),
            0x1b => Some("it is Escape, which starts every arrow and function key"),
            _ => None,
        };
        match refused {
            Some(why) => Err(format!("{t:?} cannot be the prefix key: {why}")),
            None => Ok(PrefixKey { byte }),
        }
    }

    pub fn byte(self) -> u8 {
        self.byte
    }

    /// How the key is written on screen: `Ctrl-]`, `Ctrl-A`.
    pub fn label(self) -> String {
        format!("Ctrl-{}", (self.byte | 0x40) as char)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_key_agree() {
        for t in ["C-]", "Ctrl-]", "^]", " c-] "] {
            assert_eq!(PrefixKey::parse(t), Ok(PrefixKey::default()), "{t}");
        }
        let a = PrefixKey::parse("C-a").unwrap();
        assert_eq!((a.byte(), a.label()), (0x01, "Ctrl-A".to_string()));
        assert_eq!(PrefixKey::parse("ctrl-B").unwrap().byte(), 0x02);
        assert_eq!(PrefixKey::parse("C-\\").unwrap().byte(), 0x1c);
        assert_eq!(PrefixKey::default().label(), "Ctrl-]");
    }

    #[test]
    fn keys_a_session_needs_or_nonsense_are_refused_with_the_reason() {
        for (t, why) in [
            ("C-c", "interrupt"),
            ("C-[", "Escape"),
            ("C-m", "Enter"),
            ("C-j", "Enter"),
            ("C-i", "Tab"),
            ("C-h", "Backspace"),
            ("C-@", "NUL"),
            ("a", "not a control key"),
            ("C-ab", "one key"),
            ("C-1", "letter"),
            ("", "not a control key"),
        ] {
            let e = PrefixKey::parse(t).unwrap_err();
            assert!(e.contains(why), "{t}: {e}");
        }
    }
}
