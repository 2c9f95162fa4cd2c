//! How a sandbox reaches its database, and the connection URL built from it.
//! Drivers report these and the store rebuilds them from its rows, so the
//! type lives here, below both.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::secret::Secret;

/// Everything but RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How a sandbox reaches its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbCredentials {
    /// A host name, or an absolute unix-socket directory.
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Secret<String>,
}

impl DbCredentials {
    /// A libpq/sqlx connection URL; a socket directory goes into `?host=`.
    pub fn url(&self) -> String {
        let user = percent_encode(&self.user);
        let pw = percent_encode(self.password.expose_str());
        let db = percent_encode(&self.database);
        if self.host.starts_with('/') {
            format!(
                "postgres://{user}:{pw}@localhost:{}/{db}?host={}",
                self.port,
                percent_encode(&self.host)
            )
        } else {
            format!("postgres://{user}:{pw}@{}:{}/{db}", self.host, self.port)
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, URL_COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encodes_reserved_characters_and_socket_dirs() {
        let c = DbCredentials {
            host: "/tmp/kiln sock".into(),
            port: 5432,
            database: "a-b".into(),
            user: "u@x".into(),
            password: "p:w/".into(),
        };
        assert_eq!(
            c.url(),
            "postgres://u%40x:p%3Aw%2F@localhost:5432/a-b?host=%2Ftmp%2Fkiln%20sock"
        );
        assert!(!format!("{c:?}").contains("p:w/"));
    }

    #[test]
    fn only_unreserved_characters_pass_unencoded() {
        let unreserved = "AZaz09-._~";
        assert_eq!(percent_encode(unreserved), unreserved);
        // Every other printable ASCII character, a control, and UTF-8 bytes:
        // uppercase %XX per byte, as a postgres URL parser expects.
        assert_eq!(
            percent_encode(" !\"#$%&'()*+,/:;<=>?@[\\]^`{|}"),
            "%20%21%22%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3C%3D%3E%3F%40%5B%5C%5D%5E%60%7B%7C%7D"
        );
        assert_eq!(percent_encode("\n\u{7f}é"), "%0A%7F%C3%A9");
    }
}
