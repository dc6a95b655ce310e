//! zstd-compressed agent messages decompressed with one zstd context per
//! stream, before tonic sees them.
//!
//! tonic decompresses every message with a new streaming decoder: a fresh
//! zstd context and window buffer (about 2 MiB for what tonic's encoder
//! sends) allocated and freed per message. At the ingest rate of many
//! agents that allocation churn (`ZSTD_createDCtx`, `malloc`,
//! `malloc_consolidate`) cost more than decoding the batches. [`Unzstd`]
//! wraps `AgentService`: it cuts the request body into gRPC messages,
//! decompresses each zstd message with the stream's own context, and
//! hands it on as an uncompressed message (flag 0), which tonic decodes as
//! is.
//!
//! It changes nothing else: a message it cannot decompress within the
//! size limit (corrupt, or too large) goes on untouched, so tonic answers
//! it as before; a message whose declared length is already over the limit
//! turns the stream to pass-through, so nothing large is buffered here.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::http::{HeaderValue, Request};
use tonic::codegen::{Bytes, Service};
use tonic::server::NamedService;

/// The gRPC message header: compressed flag and big-endian length.
const HEADER_BYTES: usize = 5;

/// Wraps a gRPC service whose requests may be zstd-compressed (see the
/// module doc).
#[derive(Debug, Clone)]
pub struct Unzstd<S> {
    inner: S,
    max_message_bytes: usize,
}

impl<S> Unzstd<S> {
    /// `inner` gets the messages decompressed, up to `max_message_bytes`
    /// each (its own decoding limit).
    pub fn new(inner: S, max_message_bytes: usize) -> Unzstd<S> {
        Unzstd {
            inner,
            max_message_bytes,
        }
    }
}

impl<S: NamedService> NamedService for Unzstd<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for Unzstd<S>
where
    S: Service<Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let zstd =
            request.headers().get("grpc-encoding") == Some(&HeaderValue::from_static("zstd"));
        if !zstd {
            return self.inner.call(request);
        }
        let max = self.max_message_bytes;
        let request = request.map(|body| match zstd::bulk::Decompressor::new() {
            Ok(decompressor) => Body::new(Decompressing {
                inner: body,
                buf: Vec::new(),
                ready: VecDeque::new(),
                decompressor,
                scratch: Vec::new(),
                max_message_bytes: max,
                pass_through: false,
                trailers: None,
                ended: false,
            }),
            // No context: leave the work to tonic.
            Err(_) => body,
        });
        self.inner.call(request)
    }
}

/// A request body whose zstd messages come out decompressed.
struct Decompressing {
    inner: Body,
    /// Bytes of a message not yet complete.
    buf: Vec<u8>,
    /// Data ready to hand on, in order.
    ready: VecDeque<Bytes>,
    decompressor: zstd::bulk::Decompressor<'static>,
    /// Reused output buffer.
    scratch: Vec<u8>,
    max_message_bytes: usize,
    /// Everything from here on is handed on untouched.
    pass_through: bool,
    /// Trailers to hand on once `ready` is empty.
    trailers: Option<Frame<Bytes>>,
    /// The inner body has ended.
    ended: bool,
}

impl Decompressing {
    /// Hands on whatever is buffered as it is.
    fn flush_rest(&mut self) {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.ready.push_back(Bytes::from(rest));
        }
    }

    /// Moves every complete message of `buf` to `ready`.
    fn split_messages(&mut self) {
        let mut start = 0;
        while !self.pass_through && self.buf.len() - start >= HEADER_BYTES {
            let header = &self.buf[start..start + HEADER_BYTES];
            let flag = header[0];
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            if len > self.max_message_bytes {
                // tonic refuses it by its header; do not buffer it here.
                self.pass_through = true;
                break;
            }
            let end = start + HEADER_BYTES + len;
            if self.buf.len() < end {
                break;
            }
            let message = &self.buf[start..end];
            let out = if flag == 1 {
                decompress(
                    &mut self.decompressor,
                    &mut self.scratch,
                    self.max_message_bytes,
                    &message[HEADER_BYTES..],
                )
                .unwrap_or_else(|| Bytes::copy_from_slice(message))
            } else {
                Bytes::copy_from_slice(message)
            };
            self.ready.push_back(out);
            start = end;
        }
        if self.pass_through && start < self.buf.len() {
            self.ready
                .push_back(Bytes::copy_from_slice(&self.buf[start..]));
            start = self.buf.len();
        }
        self.buf.drain(..start);
    }
}

/// The uncompressed message (with its header), or `None` to let tonic
/// handle the original.
fn decompress(
    decompressor: &mut zstd::bulk::Decompressor<'static>,
    scratch: &mut Vec<u8>,
    max: usize,
    compressed: &[u8],
) -> Option<Bytes> {
    let mut capacity = compressed.len().saturating_mul(8).clamp(4096, max.max(1));
    loop {
        scratch.clear();
        scratch.reserve(capacity);
        match decompressor.decompress_to_buffer(compressed, scratch) {
            Ok(n) => {
                let len = u32::try_from(n).ok()?;
                let mut out = Vec::with_capacity(HEADER_BYTES + n);
                out.push(0);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&scratch[..n]);
                if scratch.capacity() > 4 * max.min(1 << 20) {
                    // Do not keep a rare huge buffer for the stream's life.
                    *scratch = Vec::new();
                }
                return Some(Bytes::from(out));
            }
            // Most likely the output did not fit: try more, up to the limit.
            Err(_) if capacity < max => capacity = capacity.saturating_mul(4).min(max),
            Err(_) => return None,
        }
    }
}

impl HttpBody for Decompressing {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        loop {
            if let Some(data) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if let Some(trailers) = this.trailers.take() {
                return Poll::Ready(Some(Ok(trailers)));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if this.pass_through => {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(data) => {
                        this.buf.extend_from_slice(&data);
                        this.split_messages();
                    }
                    Err(trailers) => {
                        // What is left (an incomplete message) first; tonic
                        // reports it.
                        this.flush_rest();
                        this.trailers = Some(trailers);
                    }
                },
                Poll::Ready(None) => {
                    this.flush_rest();
                    this.ended = true;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty()
            && self.buf.is_empty()
            && self.trailers.is_none()
            && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64 * 1024;

    fn body() -> Decompressing {
        Decompressing {
            inner: Body::empty(),
            buf: Vec::new(),
            ready: VecDeque::new(),
            decompressor: zstd::bulk::Decompressor::new().expect("zstd context"),
            scratch: Vec::new(),
            max_message_bytes: MAX,
            pass_through: false,
            trailers: None,
            ended: false,
        }
    }

    /// A gRPC message: flag, big-endian length, payload.
    fn framed(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn compressed(payload: &[u8]) -> Vec<u8> {
        framed(1, &zstd::encode_all(payload, 3).expect("compress"))
    }

    /// Feeds `bytes` in chunks of `chunk` bytes and returns what comes out.
    fn feed(body: &mut Decompressing, bytes: &[u8], chunk: usize) -> Vec<u8> {
        for part in bytes.chunks(chunk) {
            body.buf.extend_from_slice(part);
            body.split_messages();
        }
        body.flush_rest();
        body.ready.drain(..).flat_map(|b| b.to_vec()).collect()
    }

    #[test]
    fn compressed_messages_come_out_uncompressed_whatever_the_frame_cuts() {
        let first: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
        let second = b"a second, shorter message".to_vec();
        let mut wire = compressed(&first);
        wire.extend(framed(0, b"already plain"));
        wire.extend(compressed(&second));
        let mut want = framed(0, &first);
        want.extend(framed(0, b"already plain"));
        want.extend(framed(0, &second));
        for chunk in [1, 3, 5, 7, 4096, wire.len()] {
            assert_eq!(feed(&mut body(), &wire, chunk), want, "chunks of {chunk}");
        }
    }

    #[test]
    fn what_cannot_be_decompressed_goes_on_untouched() {
        // Garbage flagged as compressed: tonic gets it as sent and answers
        // with its own error.
        let garbage = framed(1, b"\x28\xb5\x2f\xfd not really zstd");
        assert_eq!(feed(&mut body(), &garbage, 4), garbage);
        // Decompresses to more than the limit: handed on compressed, so
        // tonic's own limit refuses it; nothing over the limit is built.
        let bomb = compressed(&vec![0u8; MAX * 4]);
        assert_eq!(feed(&mut body(), &bomb, 1000), bomb);
    }

    #[test]
    fn a_declared_length_over_the_limit_turns_the_stream_to_pass_through() {
        let mut wire = vec![1u8];
        wire.extend_from_slice(&u32::try_from(MAX + 1).expect("small").to_be_bytes());
        wire.extend_from_slice(&[7u8; 100]);
        let later = compressed(b"after the oversized one");
        wire.extend_from_slice(&later);
        let mut b = body();
        assert_eq!(feed(&mut b, &wire, 9), wire, "everything handed on as sent");
        assert!(b.pass_through);
        assert!(b.buf.is_empty(), "nothing buffered");
    }
}
