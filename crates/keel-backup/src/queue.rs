//! A bounded queue of byte chunks read as a blocking [`std::io::Read`]: how
//! async code hands a stream to a checker or an installer on its own thread.

use bytes::Bytes;

/// Reads the chunks sent on a queue, in order, as one byte stream; the
/// stream ends when every sender is gone. Blocks, so it belongs on a
/// blocking thread.
pub(crate) struct QueueReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl QueueReader {
    /// A reader of what is sent on `rx`.
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl std::io::Read for QueueReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = self.current.len().min(buf.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
