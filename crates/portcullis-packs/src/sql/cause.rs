//! Why a database cannot be used, sorted into the classes an operator acts on: a file that
//! is not there, a login the database refuses, a database that does not exist, a port
//! nobody listens on, a host that does not answer, a TLS failure. Each class says whether
//! waiting can fix it; the model is told the class, the operator also the detail
//! ([`Cause::detail`], with where the source points, secrets scrubbed).

/// The class of a [`Cause`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// A SQLite file that does not exist (or cannot be opened).
    NotFound,
    /// The database refused the login (wrong password, unknown role or user).
    Authentication,
    /// The server is there; the database named in the URL is not.
    NoDatabase,
    /// Nothing listens at the address.
    Refused,
    /// No answer in time.
    TimedOut,
    /// An open connection broke (the server went away, or a proxy between).
    Lost,
    /// The TLS handshake failed.
    Tls,
    /// The host cannot be reached (name resolution, routing).
    Unreachable,
    /// The file or server answered, but not as a database of this engine.
    Unusable,
    /// Anything else that kept the connection from opening.
    Other,
}

impl Class {
    /// How the class is named to the model and on `/readyz`.
    pub(crate) fn words(self) -> &'static str {
        match self {
            Self::NotFound => "its file does not exist",
            Self::Authentication => "authentication failed",
            Self::NoDatabase => "the database does not exist",
            Self::Refused => "connection refused",
            Self::TimedOut => "no answer in time",
            Self::Lost => "the connection was lost",
            Self::Tls => "TLS failure",
            Self::Unreachable => "host unreachable",
            Self::Unusable => "not a usable database",
            Self::Other => "cannot connect",
        }
    }

    /// Whether the configuration (or the database's own setup) must change: waiting does
    /// not help.
    pub(crate) fn needs_the_operator(self) -> bool {
        matches!(
            self,
            Self::NotFound | Self::Authentication | Self::NoDatabase | Self::Tls | Self::Unusable
        )
    }
}

/// Why a source's connection could not be used: the class and the driver's own words.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    pub(crate) class: Class,
    /// The driver's or the OS's explanation (never shown to the model).
    message: String,
}

impl Cause {
    pub(crate) fn new(class: Class, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
        }
    }

    /// An error met while a statement ran on a connection that was open: the connection
    /// broke or answered nonsense (a restart, a proxy), which waiting may fix; a pool that
    /// timed out stays a timeout.
    pub(crate) fn during_statement(error: &sqlx::Error) -> Self {
        let class = match error {
            sqlx::Error::PoolTimedOut => Class::TimedOut,
            _ => Class::Lost,
        };
        Self::new(class, error.to_string())
    }

    /// Sorts a driver error met while connecting.
    pub(crate) fn of(error: &sqlx::Error) -> Self {
        let class = match error {
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                    match my.number() {
                        1044 | 1045 | 1698 => Class::Authentication,
                        1049 => Class::NoDatabase,
                        _ => Class::Other,
                    }
                } else if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    match code.as_str() {
                        "28P01" | "28000" => Class::Authentication,
                        "3D000" => Class::NoDatabase,
                        _ => Class::Other,
                    }
                } else {
                    // SQLite: the primary result code is the low byte of the extended one.
                    match code.parse::<i64>().map(|c| c & 0xff) {
                        Ok(14) => Class::NotFound,
                        Ok(26) => Class::Unusable,
                        _ => Class::Other,
                    }
                }
            }
            sqlx::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => Class::Refused,
                std::io::ErrorKind::TimedOut => Class::TimedOut,
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof => Class::Lost,
                _ => Class::Unreachable,
            },
            sqlx::Error::Tls(_) => Class::Tls,
            sqlx::Error::PoolTimedOut => Class::TimedOut,
            sqlx::Error::Protocol(_) => Class::Unusable,
            _ => Class::Other,
        };
        Self::new(class, error.to_string())
    }

    /// What the operator reads (`check --connect`, `/readyz`'s log line): the class, where
    /// the source points (`at`: a file, or `user@host:port/database`) and the driver's words,
    /// secrets scrubbed.
    pub(crate) fn detail(&self, at: &str) -> String {
        let advice = match self.class {
            Class::NotFound => {
                " (create the file, or give the source a `seed` script that creates it)"
            }
            Class::Refused => " (is the database running, and on this port?)",
            _ => "",
        };
        portcullis_core::redact_secrets(&format!(
            "{} at {at}: {}{advice}",
            self.class.words(),
            self.message
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_sort_by_kind_and_say_whether_waiting_helps() {
        let io = |kind| sqlx::Error::Io(std::io::Error::new(kind, "x"));
        for (error, class, operator) in [
            (
                io(std::io::ErrorKind::ConnectionRefused),
                Class::Refused,
                false,
            ),
            (io(std::io::ErrorKind::TimedOut), Class::TimedOut, false),
            (io(std::io::ErrorKind::BrokenPipe), Class::Lost, false),
            (io(std::io::ErrorKind::Other), Class::Unreachable, false),
            (sqlx::Error::PoolTimedOut, Class::TimedOut, false),
            (
                sqlx::Error::Protocol("garbage".into()),
                Class::Unusable,
                true,
            ),
        ] {
            let cause = Cause::of(&error);
            assert_eq!(cause.class, class, "{error}");
            assert_eq!(cause.class.needs_the_operator(), operator, "{error}");
        }
    }

    #[test]
    fn the_detail_names_where_and_scrubs_secrets() {
        let cause = Cause::new(Class::Refused, "Connection refused (os error 111)");
        assert_eq!(
            cause.detail("app@127.0.0.1:5999/test"),
            "connection refused at app@127.0.0.1:5999/test: Connection refused (os error 111) (is the database running, and on this port?)"
        );
        let leaky = Cause::new(Class::Other, "failed for postgres://u:hunter2@db/x");
        assert!(!leaky.detail("db").contains("hunter2"));
    }
}
