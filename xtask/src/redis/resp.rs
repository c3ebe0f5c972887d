//! The Redis protocol (RESP2) for the few commands this tool sends: commands written as arrays of
//! bulk strings, several at once (one round trip), and the replies read back in order.
//!
//! Hand-written rather than the `redis` crate: that crate brings `url` with its IDNA and ICU
//! tables (some 80 crates, ~17 s of a cold build here) for a protocol this small.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// One reply. Errors are values here, so a pipeline's later replies are still read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as a result: a server error becomes an error.
    pub fn ok(self) -> Result<Reply> {
        match self {
            Reply::Error(message) => bail!("{message}"),
            reply => Ok(reply),
        }
    }

    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(text) => Some(text.clone()),
            Reply::Bulk(Some(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The elements of an array reply; none for a nil or another kind.
    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(Some(items)) => items,
            _ => &[],
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Reply::Bulk(None) | Reply::Array(None))
    }
}

/// A command: its words, each sent as a bulk string (no quoting, no injection).
pub type Command = Vec<String>;

pub fn command<S: AsRef<str>>(words: &[S]) -> Command {
    words.iter().map(|w| w.as_ref().to_owned()).collect()
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

pub struct Connection {
    stream: BufReader<Box<dyn Stream>>,
    /// The socket under the stream, to change its timeouts.
    socket: TcpStream,
}

/// Redis's own limit on a bulk string; a longer one is not Redis talking.
const MAX_BULK: i64 = 512 * 1024 * 1024;
const MAX_LINE: u64 = 64 * 1024;
const MAX_DEPTH: usize = 16;

impl Connection {
    /// Connects within `timeout`, which also bounds every later read (a silent peer fails); with
    /// `tls`, through a TLS session verified by that configuration.
    pub fn open(
        host: &str,
        port: u16,
        timeout: Duration,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<Connection> {
        let tcp = connect_tcp(host, port, timeout)?;
        let socket = tcp.try_clone().context("connect to Redis")?;
        let Some(config) = tls else {
            return Ok(Connection { stream: BufReader::new(Box::new(tcp)), socket });
        };
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .with_context(|| format!("{host} is not a name TLS can verify"))?;
        let session = rustls::ClientConnection::new(config, name).context("start TLS")?;
        let mut stream = rustls::StreamOwned::new(session, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .with_context(|| format!("TLS with Redis at {host}:{port}"))?;
        }
        Ok(Connection { stream: BufReader::new(Box::new(stream)), socket })
    }

    /// How long a reply may take from now on (a quick probe's connection, kept for real work).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.socket.set_read_timeout(Some(timeout))?;
        Ok(self.socket.set_write_timeout(Some(timeout))?)
    }

    /// Sends every command at once and reads one reply per command.
    pub fn pipeline(&mut self, commands: &[Command]) -> Result<Vec<Reply>> {
        let mut out = Vec::new();
        for words in commands {
            out.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
            for word in words {
                out.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
                out.extend_from_slice(word.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        let stream = self.stream.get_mut();
        stream.write_all(&out).and_then(|()| stream.flush()).context("send to Redis")?;
        commands.iter().map(|_| read_reply(&mut self.stream, 0)).collect()
    }

    /// One command; a server error is an error.
    pub fn call<S: AsRef<str>>(&mut self, words: &[S]) -> Result<Reply> {
        self.pipeline(&[command(words)])?.remove(0).ok()
    }
}

fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let addresses: Vec<_> =
        (host, port).to_socket_addrs().with_context(|| format!("resolve {host}:{port}"))?.collect();
    let mut last = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(tcp) => {
                tcp.set_read_timeout(Some(timeout))?;
                tcp.set_write_timeout(Some(timeout))?;
                tcp.set_nodelay(true)?;
                return Ok(tcp);
            }
            Err(error) => last = Some(error),
        }
    }
    match last {
        Some(error) => Err(error).with_context(|| format!("connect to Redis at {host}:{port}")),
        None => bail!("{host} has no address"),
    }
}

/// One reply; what is not a Redis reply (another program on the port) is an error, never a panic
/// or an unbounded read.
fn read_reply(reader: &mut impl BufRead, depth: usize) -> Result<Reply> {
    let mut line = Vec::new();
    reader.take(MAX_LINE).read_until(b'\n', &mut line).context("read from Redis")?;
    if line.is_empty() {
        bail!("Redis closed the connection");
    }
    if line.len() < 3 || !line.ends_with(b"\r\n") || depth > MAX_DEPTH {
        bail!("the server did not answer as Redis does (a malformed reply)");
    }
    let head = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let number = || head.parse::<i64>().with_context(|| format!("Redis sent a malformed length {head:?}"));
    Ok(match line[0] {
        b'+' => Reply::Status(head),
        b'-' => Reply::Error(head),
        b':' => Reply::Int(number()?),
        b'$' => match number()? {
            n if n < 0 => Reply::Bulk(None),
            n if n > MAX_BULK => bail!("the server did not answer as Redis does (a bulk of {n} bytes)"),
            n => {
                let mut data = vec![0; n as usize + 2];
                reader.read_exact(&mut data).context("read from Redis")?;
                data.truncate(n as usize);
                Reply::Bulk(Some(data))
            }
        },
        b'*' => match number()? {
            n if n < 0 => Reply::Array(None),
            n if n > MAX_BULK => bail!("the server did not answer as Redis does (an array of {n} items)"),
            n => Reply::Array(Some((0..n).map(|_| read_reply(reader, depth + 1)).collect::<Result<_>>()?)),
        },
        other => bail!("Redis sent a reply of unknown type {:?}", other as char),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_of_every_kind_are_read() {
        let text = b"+OK\r\n-ERR no\r\n:42\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\nx\r\n*-1\r\n";
        let mut reader = &text[..];
        let mut read = || read_reply(&mut reader, 0);
        assert_eq!(read().unwrap(), Reply::Status("OK".into()));
        assert_eq!(read().unwrap(), Reply::Error("ERR no".into()));
        assert_eq!(read().unwrap().int(), Some(42));
        assert_eq!(read().unwrap().text().as_deref(), Some("a\r\n"));
        assert!(read().unwrap().is_nil());
        let array = read().unwrap();
        assert_eq!(array.items()[0].text().as_deref(), Some("x"));
        assert!(array.items()[1].is_nil());
        // Not Redis: errors, never a panic or a huge allocation.
        let deep = "*1\r\n".repeat(40) + ":1\r\n";
        for bad in [
            &b""[..],
            b"$5\r\nab\r\n",
            b"\r\n",
            b"$99999999999\r\n",
            b"*99999999999\r\n",
            b"SSH-2.0\r\n",
            deep.as_bytes(),
        ] {
            assert!(read_reply(&mut &bad[..], 0).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
