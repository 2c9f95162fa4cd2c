//! Property tests of public-key line parsing: key lines built from real
//! wire encodings (ed25519, RSA, ECDSA, security keys, DSA, unknown
//! algorithms), then damaged, given odd comments and odd spacing. Whatever
//! the line, parsing never panics; an accepted line has one canonical form
//! (the bare key `metadata.key` keeps) that parses back to the same key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;

use super::*;
use crate::model::untrusted::hostile_text;

/// SSH wire encoding: each field a big-endian u32 length, then the bytes.
fn wire(fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        out.extend_from_slice(&u32::try_from(f.len()).unwrap().to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// A positive mpint as SSH encodes it: no leading zeros, one added when
/// the top bit is set.
fn mpint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
    match trimmed.first() {
        Some(&b) if b & 0x80 != 0 => std::iter::once(0).chain(trimmed).collect(),
        _ => trimmed,
    }
}

fn bytes(len: impl Into<proptest::collection::SizeRange>) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), len)
}

/// (the algorithm name, the key blob) for keys of every kind.
fn key_blob() -> impl Strategy<Value = (String, Vec<u8>)> {
    prop_oneof![
        3 => bytes(32).prop_map(|k| ("ssh-ed25519".into(), wire(&[b"ssh-ed25519", &k]))),
        1 => (bytes(1..4), prop_oneof![bytes(1..64), bytes(255..=257), bytes(511..=513)])
            .prop_map(|(e, n)| ("ssh-rsa".into(), wire(&[b"ssh-rsa", &mpint(&e), &mpint(&n)]))),
        1 => bytes(64).prop_map(|xy| {
            let point: Vec<u8> = std::iter::once(4).chain(xy).collect();
            let alg = "ecdsa-sha2-nistp256";
            (alg.into(), wire(&[alg.as_bytes(), b"nistp256", &point]))
        }),
        1 => (bytes(32), "[a-z:]{0,12}").prop_map(|(k, app)| {
            let alg = "sk-ssh-ed25519@openssh.com";
            (alg.into(), wire(&[alg.as_bytes(), &k, app.as_bytes()]))
        }),
        1 => (bytes(20), bytes(128)).prop_map(|(q, p)| {
            ("ssh-dss".into(), wire(&[b"ssh-dss", &mpint(&p), &mpint(&q), &mpint(&p), &mpint(&p)]))
        }),
        1 => ("[a-z0-9@.-]{1,24}", bytes(0..64))
            .prop_map(|(alg, body)| (alg.clone(), wire(&[alg.as_bytes(), &body]))),
    ]
}

/// A key line: maybe damaged, maybe mislabelled, with odd comments and spacing.
fn key_line() -> impl Strategy<Value = String> {
    (
        key_blob(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..2),
        proptest::option::of(any::<prop::sample::Index>()),
        proptest::option::of("[a-z0-9@.-]{1,24}"),
        proptest::option::of(hostile_text(30)),
        "[ \t\n]{0,2}",
        "[ \t\n\r]{0,2}",
    )
        .prop_map(
            |((alg, mut blob), flips, cut, label, comment, lead, trail)| {
                for (at, byte) in flips {
                    let i = at.index(blob.len());
                    blob[i] ^= byte;
                }
                if let Some(at) = cut {
                    blob.truncate(at.index(blob.len() + 1));
                }
                let mut line = format!("{lead}{} {}", label.unwrap_or(alg), STANDARD.encode(&blob));
                if let Some(comment) = comment {
                    line.push(' ');
                    line.push_str(&comment);
                }
                line.push_str(&trail);
                line
            },
        )
}

/// The one-line comments a key line can carry as they are.
fn plain_comment() -> impl Strategy<Value = String> {
    hostile_text(40).prop_map(|c| {
        c.chars()
            .filter(|&c| c != '\n' && c != '\r')
            .collect::<String>()
            .trim()
            .replace("PRIVATE KEY", "")
    })
}

proptest! {
    #![proptest_config(crate::model::untrusted::config(256))]

    #[test]
    fn any_text_is_refused_or_parsed_without_panicking(text in hostile_text(200)) {
        if let Ok(key) = parse_public_key(&text) {
            prop_assert!(bare_openssh(&key).is_ok());
        }
    }

    #[test]
    fn an_accepted_key_line_has_one_canonical_form(line in key_line()) {
        let Ok(key) = parse_public_key(&line) else { return Ok(()) };
        prop_assert!(!matches!(key.algorithm(), Algorithm::Dsa | Algorithm::Other(_)));
        let record = KeyRecord::parse(&line).expect("the record parses as the key did");
        let comment = key.comment().as_str_lossy().to_string();
        prop_assert!(!comment.contains(['\n', '\r']), "{comment:?}");
        prop_assert_eq!(&record.fingerprint, &fingerprint(&key));
        prop_assert_eq!(&record.comment, &comment);

        // The bare form: "ALGORITHM BASE64", which parses to the same key
        // and is its own bare form.
        let bare = bare_openssh(&key).unwrap();
        let fields: Vec<&str> = bare.split(' ').collect();
        prop_assert_eq!(fields.len(), 2, "{}", bare);
        let algorithm = key.algorithm();
        prop_assert_eq!(fields[0], algorithm.as_str());
        let again = parse_public_key(&bare).expect("the bare form parses");
        prop_assert_eq!(fingerprint(&again), fingerprint(&key));
        prop_assert_eq!(bare_openssh(&again).unwrap(), bare.clone());
        prop_assert_eq!(again.comment().as_str_lossy(), "");
        prop_assert_eq!(&record.metadata["key"], &serde_json::Value::from(bare.clone()));

        // With its comment put back, it is the same record again.
        if !comment.is_empty() {
            let full = KeyRecord::parse(&format!("{bare} {comment}")).expect("the full form parses");
            prop_assert_eq!(full.fingerprint, record.fingerprint);
            prop_assert_eq!(full.comment, comment);
        }
    }

    #[test]
    fn a_well_formed_ed25519_line_keeps_its_comment(
        key in bytes(32),
        comment in plain_comment(),
    ) {
        let blob = STANDARD.encode(wire(&[b"ssh-ed25519", &key]));
        let line = format!("ssh-ed25519 {blob} {comment}");
        let record = KeyRecord::parse(&line);
        prop_assert!(record.is_ok(), "{:?}: {:?}", line, record.err());
        let record = record.unwrap();
        prop_assert_eq!(record.algorithm, "ssh-ed25519");
        prop_assert_eq!(record.comment, comment);
        let bare = format!("ssh-ed25519 {blob}");
        prop_assert_eq!(record.metadata["key"].as_str(), Some(bare.as_str()));
    }

    #[test]
    fn refusals_are_short_and_do_not_echo_the_input(text in prop_oneof![hostile_text(200), key_line()]) {
        if let Err(e) = parse_public_key(&text) {
            let message = e.to_string();
            prop_assert!(message.len() <= 300, "{message}");
            prop_assert!(!message.chars().any(char::is_control), "{message:?}");
        }
    }
}
