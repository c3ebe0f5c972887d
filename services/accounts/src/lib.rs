//! Accounts: registration and password checks over the `accounts` database.
//!
//! E-mail addresses are `citext`, so `Alice@Example.com` and `alice@example.com` are the same account.
//! Passwords are hashed in the database by pgcrypto's `crypt()` with a bcrypt salt, and always travel
//! as bind parameters, never as SQL text.

use std::fmt;
use std::time::SystemTime;

use postgres::error::SqlState;
use postgres::{Client, NoTls, Row};

/// bcrypt cost of new password hashes (2^8 rounds).
const BCRYPT_COST: i32 = 8;

/// A registered account. The password hash never leaves the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    /// As registered; compared case-insensitively.
    pub email: String,
    pub display_name: Option<String>,
    pub created_at: SystemTime,
}

/// What can go wrong.
#[derive(Debug)]
pub enum Error {
    /// The e-mail address is empty or has no `@`.
    InvalidEmail,
    /// The password is empty.
    EmptyPassword,
    /// Another account has this e-mail address, compared case-insensitively.
    EmailTaken,
    /// Connecting or querying failed.
    Database(postgres::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidEmail => f.write_str("invalid e-mail address: it needs an `@`"),
            Error::EmptyPassword => f.write_str("the password must not be empty"),
            Error::EmailTaken => f.write_str("an account with this e-mail address already exists"),
            Error::Database(err) => write!(f, "accounts database: {err}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Database(err) => Some(err),
            _ => None,
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(err: postgres::Error) -> Error {
        Error::Database(err)
    }
}

/// A connection to the accounts database.
pub struct Accounts {
    client: Client,
}

impl Accounts {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname`), without TLS.
    pub fn connect(url: &str) -> Result<Accounts, Error> {
        Ok(Accounts { client: Client::connect(url, NoTls)? })
    }

    /// Creates an account. Fails with [`Error::EmailTaken`] when the address is registered already, in any
    /// letter case.
    pub fn register(&mut self, email: &str, password: &str) -> Result<Account, Error> {
        let email = validate(email, password)?;
        let sql = "INSERT INTO accounts (email, password_hash) VALUES ($1, crypt($2, gen_salt('bf', $3))) \
                   RETURNING id, email, display_name, created_at";
        match self.client.query_one(sql, &[&email, &password, &BCRYPT_COST]) {
            Ok(row) => Ok(account(&row)),
            // The table's only unique constraint an insert can break is the one on `email`.
            Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(Error::EmailTaken),
            Err(err) => Err(err.into()),
        }
    }

    /// The account with this e-mail address and password; `None` when there is no such address or the
    /// password is wrong (the two are not told apart).
    pub fn verify(&mut self, email: &str, password: &str) -> Result<Option<Account>, Error> {
        let email = validate(email, password)?;
        let sql = "SELECT id, email, display_name, created_at FROM accounts \
                   WHERE email = $1 AND crypt($2, password_hash) = password_hash";
        let row = self.client.query_opt(sql, &[&email, &password])?;
        Ok(row.as_ref().map(account))
    }

    /// The account with this id, if any.
    pub fn find(&mut self, id: i64) -> Result<Option<Account>, Error> {
        let sql = "SELECT id, email, display_name, created_at FROM accounts WHERE id = $1";
        let row = self.client.query_opt(sql, &[&id])?;
        Ok(row.as_ref().map(account))
    }
}

/// The trimmed e-mail address, once both it and the password pass the basic checks.
fn validate<'a>(email: &'a str, password: &str) -> Result<&'a str, Error> {
    let email = email.trim();
    // An address needs something before its `@`, as the table's CHECK constraint says.
    let Some(1..) = email.find('@') else {
        return Err(Error::InvalidEmail);
    };
    if password.is_empty() {
        return Err(Error::EmptyPassword);
    }
    Ok(email)
}

fn account(row: &Row) -> Account {
    Account { id: row.get(0), email: row.get(1), display_name: row.get(2), created_at: row.get(3) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert_eq!(validate("  a@b.example ", "x").unwrap(), "a@b.example");
        assert_eq!(validate("é@b.example", "x").unwrap(), "é@b.example");
        for email in ["", "   ", "no-at-sign", "@example.com", " @example.com"] {
            assert!(matches!(validate(email, "x"), Err(Error::InvalidEmail)), "{email:?}");
        }
        assert!(matches!(validate("a@b.example", ""), Err(Error::EmptyPassword)));
    }
}
