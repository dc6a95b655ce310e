//! Asking a TCP port what protocol it speaks, without TLS or gRPC: send the
//! HTTP/2 client preface in clear and look at the first bytes of the answer.
//!
//! A plaintext gRPC server answers with an HTTP/2 SETTINGS frame; a TLS
//! server answers with a TLS alert record (or just closes); an HTTP/1 server
//! answers `HTTP/1.1 ...`. This is how `upid` tells "http:// against a TLS
//! collector" (and the reverse) from other failures.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The HTTP/2 connection preface followed by an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// HTTP/2 frame type of SETTINGS.
const H2_FRAME_SETTINGS: u8 = 0x04;

/// What a port answered to a cleartext HTTP/2 preface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Speaks {
    /// HTTP/2 without TLS (a gRPC server on http://).
    PlainHttp2,
    /// TLS: it answered with a TLS record.
    Tls,
    /// HTTP/1: some web server, not gRPC.
    Http1,
    /// It closed the connection without a byte: most likely TLS.
    ClosedSilently,
    /// Nothing came back in time.
    NoAnswer,
    /// Bytes that match none of the above (first few, hex).
    Unknown(String),
}

impl Speaks {
    /// Short description for people.
    pub fn describe(&self) -> String {
        match self {
            Speaks::PlainHttp2 => "plain HTTP/2 (no TLS)".into(),
            Speaks::Tls => "TLS".into(),
            Speaks::Http1 => "HTTP/1 (not gRPC)".into(),
            Speaks::ClosedSilently => {
                "nothing: it closed the connection on a plain HTTP/2 hello (likely TLS)".into()
            }
            Speaks::NoAnswer => "nothing within the timeout".into(),
            Speaks::Unknown(hex) => format!("an unknown protocol (first bytes {hex})"),
        }
    }

    /// Whether this looks like a TLS server.
    pub fn is_tls_like(&self) -> bool {
        matches!(self, Speaks::Tls | Speaks::ClosedSilently)
    }
}

/// Reads the first bytes a server sent back (`closed` when it hung up
/// before sending `bytes.len()` of them).
pub fn classify_reply(bytes: &[u8], closed: bool) -> Speaks {
    if bytes.is_empty() {
        return if closed {
            Speaks::ClosedSilently
        } else {
            Speaks::NoAnswer
        };
    }
    if bytes.len() >= 9 && bytes[3] == H2_FRAME_SETTINGS && bytes[5..9] == [0, 0, 0, 0] {
        return Speaks::PlainHttp2;
    }
    // TLS record: content type 20..=23, protocol major version 3.
    if bytes.len() >= 2 && (0x14..=0x17).contains(&bytes[0]) && bytes[1] == 0x03 {
        return Speaks::Tls;
    }
    // A status line, or an HTML error page from a server too old to send one.
    if bytes.starts_with(b"HTTP/") || bytes.starts_with(b"<") {
        return Speaks::Http1;
    }
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Speaks::Unknown(hex.join(" "))
}

/// Connects to `addr`, sends the cleartext HTTP/2 preface and reads what
/// comes back (at most `timeout` for each step).
pub async fn sniff(addr: SocketAddr, timeout: Duration) -> std::io::Result<Speaks> {
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.write_all(H2_PREFACE).await?;
    let mut buf = [0u8; 16];
    let mut filled = 0;
    let mut closed = false;
    let read_all = async {
        while filled < 9 {
            match stream.read(&mut buf[filled..]).await {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => filled += n,
                // A reset right after our hello is a hang-up, as is EOF.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    closed = true;
                    break;
                }
                Err(e) => return Err(e),
            }
            // A TLS alert is 7 bytes: enough to decide.
            if filled >= 2 && classify_reply(&buf[..filled], false) == Speaks::Tls {
                break;
            }
        }
        Ok(())
    };
    // On timeout, judge by what arrived so far.
    if let Ok(result) = tokio::time::timeout(timeout, read_all).await {
        result?;
    }
    Ok(classify_reply(&buf[..filled], closed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settings_frame_is_plain_http2() {
        // Length 6, type SETTINGS, flags 0, stream 0, one setting.
        let frame = [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        assert_eq!(classify_reply(&frame, false), Speaks::PlainHttp2);
    }

    #[test]
    fn a_tls_alert_is_tls() {
        let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];
        assert_eq!(classify_reply(&alert, true), Speaks::Tls);
        assert!(Speaks::Tls.is_tls_like());
    }

    #[test]
    fn silence_and_hangups_are_told_apart() {
        assert_eq!(classify_reply(&[], true), Speaks::ClosedSilently);
        assert_eq!(classify_reply(&[], false), Speaks::NoAnswer);
        assert!(Speaks::ClosedSilently.is_tls_like());
        assert!(!Speaks::NoAnswer.is_tls_like());
    }

    #[test]
    fn http1_and_garbage_are_recognised() {
        assert_eq!(
            classify_reply(b"HTTP/1.1 400 Bad Request\r\n", true),
            Speaks::Http1
        );
        assert_eq!(classify_reply(b"<!DOCTYPE HTML>", true), Speaks::Http1);
        assert_eq!(
            classify_reply(b"SSH-2.0-OpenSSH", false),
            Speaks::Unknown("53 53 48 2d 32 2e 30 2d".into())
        );
    }

    #[tokio::test]
    async fn sniffing_a_local_listener_reads_its_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut hello = [0u8; 24];
            s.read_exact(&mut hello).await.expect("preface");
            s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                .await
                .expect("write");
        });
        let speaks = sniff(addr, Duration::from_secs(5)).await.expect("sniff");
        assert_eq!(speaks, Speaks::Http1);
        server.await.expect("server task");
    }
}
