//! Where the database is: a SQLite file or a PostgreSQL server, from `--database-url`.

use std::path::PathBuf;

/// A database the store can open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    /// A `postgres://` (or `postgresql://`) URL; it may carry a password.
    Postgres(String),
}

impl Location {
    /// `sqlite://PATH` (or `sqlite:PATH`), `postgres://...` or `postgresql://...`.
    pub fn parse(url: &str) -> Result<Location, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Location::Postgres(url.to_string()));
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"));
        match path {
            Some(path) if !path.is_empty() => {
                // Query parameters (`?mode=rwc`) are the store's to choose.
                let path = path.split('?').next().unwrap_or(path);
                Ok(Location::Sqlite(PathBuf::from(path)))
            }
            _ => Err(format!(
                "database URL {:?} is neither sqlite://PATH nor postgres://USER@HOST/DATABASE",
                redact_url(url)
            )),
        }
    }

    /// For logs and errors: the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(path) => format!("sqlite://{}", path.display()),
            Location::Postgres(url) => redact_url(url),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::Sqlite(path)
    }
}

/// `scheme://user:secret@host/db?password=secret` -> `scheme://user:***@host/db?password=***`
/// (the user info ends at the last `@` before the path, so an unencoded `@` in a password
/// does not leave its end showing).
pub(crate) fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
                    None => base.to_string(),
                },
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    let Some(query) = query else { return base };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_sqlite_file_or_a_postgres_server_and_passwords_stay_out_of_messages() {
        assert_eq!(
            Location::parse("sqlite:///var/lib/drsn/drsn.sqlite"),
            Ok(Location::Sqlite("/var/lib/drsn/drsn.sqlite".into()))
        );
        assert_eq!(Location::parse("sqlite:data/x.db?mode=rwc"), Ok(Location::Sqlite("data/x.db".into())));
        let pg = "postgres://drsn:s3cret@db:5432/drsn";
        assert_eq!(Location::parse(pg), Ok(Location::Postgres(pg.into())));
        assert_eq!(Location::parse(pg).unwrap().describe(), "postgres://drsn:***@db:5432/drsn");
        let err = Location::parse("mysql://root:hunter2@db/x").unwrap_err();
        assert!(err.contains("mysql://root:***@db/x") && !err.contains("hunter2"), "{err}");
        assert!(Location::parse("sqlite://").is_err());
        assert_eq!(redact_url("postgres://u:p@ss@db/x"), "postgres://u:***@db/x");
        assert_eq!(
            redact_url("postgres://db/x?sslmode=require&password=s3"),
            "postgres://db/x?sslmode=require&password=***"
        );
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
    }
}
