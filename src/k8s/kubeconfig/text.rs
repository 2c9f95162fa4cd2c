//! Text for error messages built from untrusted input or cluster answers:
//! escaped, cut short, and without values that may be credentials.

/// A name from the input, quoted and escaped (it is shown on a terminal), and cut short.
pub(super) fn shown(name: &str) -> String {
    let cut: String = name.chars().take(64).collect();
    let more = if cut.len() < name.len() { "…" } else { "" };
    format!("{cut:?}{more}")
}

/// Text from the cluster, safe to show on a terminal, and cut short.
pub(super) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

/// serde_yaml's message without any quoted values, which may come from the
/// input (a token in the wrong place would otherwise be echoed).
pub(super) fn yaml_detail(e: &serde_yaml::Error) -> String {
    let message = e.to_string();
    let mut out = String::new();
    let mut quote = None;
    // Inside a quote, `\"` is part of the quoted text (serde_yaml escapes
    // the value it quotes): it must not end the quote, or what follows it
    // would be shown.
    let mut escaped = false;
    for c in message.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '"' || c == '`' => {
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    // Field names in backticks are safe and helpful: "missing field `cluster`".
    if message.starts_with("missing field") || message.contains(": missing field") {
        return clean(&message);
    }
    clean(&out)
}

/// The outermost message of an error, without its sources (which may quote data).
pub(super) fn top_message(e: &dyn std::error::Error) -> String {
    let full = e.to_string();
    let top = match e.source() {
        Some(source) => full
            .strip_suffix(&source.to_string())
            .map(|s| s.trim_end_matches([':', ' ']).to_string())
            .unwrap_or_else(|| full.split(": ").next().unwrap_or_default().to_string()),
        None => full,
    };
    clean(&top)
}
