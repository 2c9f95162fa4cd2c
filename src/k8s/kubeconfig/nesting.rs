//! A bound on how deep a kubeconfig nests flow collections (`[`, `{`),
//! checked before the YAML parser sees it. libyaml's scanner walks its whole
//! stack of possible keys, one per open flow collection, for every token,
//! so time grows with the square of the depth: 256 KiB of `[` kept a core
//! busy for about a minute (found by the property tests). serde_yaml
//! refuses more than 128 levels anyway, but only after scanning them all.
//!
//! The bound never underestimates the depth libyaml sees: every `[` or `{`
//! counts, even inside a string or a comment, and a `]` or `}` counts only
//! where it cannot be inside a quoted scalar, a comment or a tag, whichever
//! way the quotes before it pair up. A real kubeconfig (block YAML as
//! kubectl writes it, or JSON) stays far below the limit.

/// Deeper than this is refused; serde_yaml's own limit is 128.
pub const MAX_FLOW_DEPTH: usize = 100;

/// Where a scan can be: each reading of the text so far that libyaml might
/// have made (a quote may or may not open a quoted scalar).
const NORMAL: u8 = 1;
const SINGLE: u8 = 1 << 1;
/// After `'` inside a single-quoted scalar when the next character is `'`
/// too: the pair is one quote, the scalar goes on.
const SINGLE_PAIR: u8 = 1 << 2;
const DOUBLE: u8 = 1 << 3;
const DOUBLE_ESCAPE: u8 = 1 << 4;
const COMMENT: u8 = 1 << 5;
const TAG: u8 = 1 << 6;

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// Whether a token (a quoted scalar, a comment, a tag) may start after
/// `prev`: only after a separator or an indicator, never inside a word.
fn token_may_start_after(prev: Option<char>) -> bool {
    match prev {
        None => true,
        Some(p) => !p.is_ascii_alphanumeric() && !matches!(p, '.' | '/' | '=' | '+' | '-' | '_'),
    }
}

/// An upper bound on the flow nesting depth libyaml reaches in `yaml`;
/// stops counting once past `stop_at`.
pub fn flow_depth_bound(yaml: &str, stop_at: usize) -> usize {
    let mut states = NORMAL;
    let (mut depth, mut max) = (0usize, 0usize);
    let mut prev = None;
    let mut chars = yaml.chars().peekable();
    while let Some(c) = chars.next() {
        // NORMAL is never left: each reading that enters a quote also
        // keeps the one where that quote is a literal character.
        match c {
            '[' | '{' => {
                depth += 1;
                max = max.max(depth);
                if max > stop_at {
                    return max;
                }
            }
            ']' | '}' if states == NORMAL => depth = depth.saturating_sub(1),
            _ => {}
        }
        let starts = token_may_start_after(prev);
        let mut next = NORMAL;
        match c {
            '\'' if starts => next |= SINGLE,
            '"' if starts => next |= DOUBLE,
            '#' if starts => next |= COMMENT,
            '!' if starts => next |= TAG,
            _ => {}
        }
        if states & SINGLE != 0 {
            next |= match c {
                '\'' if chars.peek() == Some(&'\'') => SINGLE_PAIR,
                '\'' => NORMAL,
                _ => SINGLE,
            };
        }
        if states & SINGLE_PAIR != 0 {
            next |= SINGLE;
        }
        if states & DOUBLE != 0 {
            next |= match c {
                '\\' => DOUBLE_ESCAPE,
                '"' => NORMAL,
                _ => DOUBLE,
            };
        }
        if states & DOUBLE_ESCAPE != 0 {
            next |= DOUBLE;
        }
        if states & COMMENT != 0 {
            next |= if is_break(c) { NORMAL } else { COMMENT };
        }
        if states & TAG != 0 {
            next |= if c == ' ' || c == '\t' || is_break(c) {
                NORMAL
            } else {
                TAG
            };
        }
        states = next;
        prev = Some(c);
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(yaml: &str) -> usize {
        flow_depth_bound(yaml, usize::MAX)
    }

    #[test]
    fn plain_nesting_is_counted_exactly() {
        assert_eq!(bound("a: b\nc:\n  - d\n"), 0);
        assert_eq!(bound("a: [b, {c: d}]"), 2);
        assert_eq!(bound("a: [b]\nc: [d]\ne: {}\n"), 1);
        assert_eq!(bound(&"[".repeat(500)), 500);
    }

    #[test]
    fn json_kubeconfigs_count_their_real_depth() {
        let json = r#"{"apiVersion":"v1","clusters":[{"cluster":{"server":"https://k8s:6443","certificate-authority-data":"LS0t=="},"name":"prod"}],"users":[{"name":"dev","user":{"token":"abc"}}],"contexts":[{"context":{"cluster":"prod","user":"dev","namespace":""},"name":"main"}],"current-context":"main"}"#;
        assert!(bound(json) <= 5, "{}", bound(json));
        // An empty string before a `}` (`"namespace":""}`) may be read as
        // opening a string, so that `}` is not counted: one level per such
        // pair, far from the limit in any real kubeconfig.
        let many = format!("[{}]", vec![json; 20].join(","));
        assert!(bound(&many) <= 30, "{}", bound(&many));
    }

    #[test]
    fn closing_brackets_that_may_be_text_do_not_hide_depth() {
        // Each `]` here is inside a quoted scalar, a comment or a tag for
        // libyaml; counting them would let 300 real levels pass as 0.
        for hide in [
            "\"]\"",
            "']'",
            "'it''s ]'",
            "\"\\\"]\"",
            "#]\n",
            "!t]\n",
            "#]\u{2028}",
        ] {
            let yaml = format!("[{}", format!("[{hide}, ").repeat(300));
            assert!(bound(&yaml) > 300, "{hide:?}: {}", bound(&yaml));
        }
    }

    #[test]
    fn brackets_in_text_only_raise_the_bound() {
        assert_eq!(bound("a: \"[[[\"\nb: '{{'\n# [[[\n"), 8);
        assert_eq!(bound("a: \"]]]\"\nb: [x]\n"), 1);
    }

    #[test]
    fn the_scan_stops_once_past_the_limit() {
        assert_eq!(flow_depth_bound(&"[".repeat(10_000), 100), 101);
    }

    /// JSON is all flow: the bound is at least the real depth, whatever
    /// the strings hold (quotes, backslashes, brackets, `#`).
    mod properties {
        use proptest::prelude::*;
        use serde_json::Value;

        use crate::model::untrusted::hostile_text;

        fn value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                hostile_text(8).prop_map(Value::from),
                r##"[\\\[\]{}'"# ]{0,6}"##.prop_map(Value::from),
                any::<i32>().prop_map(Value::from),
            ];
            leaf.prop_recursive(12, 64, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    proptest::collection::btree_map(r#"[a-z\\\]"']{1,4}"#, inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn depth(v: &Value) -> usize {
            match v {
                Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
                Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
                _ => 0,
            }
        }

        proptest! {
            #![proptest_config(crate::model::untrusted::config(256))]

            #[test]
            fn the_bound_is_never_below_the_real_depth(v in value(), pretty: bool) {
                let json = if pretty {
                    serde_json::to_string_pretty(&v).unwrap()
                } else {
                    serde_json::to_string(&v).unwrap()
                };
                prop_assert!(super::bound(&json) >= depth(&v), "{}", json);
            }
        }
    }
}
